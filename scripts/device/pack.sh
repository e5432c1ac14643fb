#!/usr/bin/env bash
# What the GPU device check carries (docs/gpu.md): the server, jac and the benchmark published self-contained into one
# folder (they share one .NET runtime), without libtorch and libLibTorchSharp: the GPU machine supplies libtorch from its own torch
# install and builds libLibTorchSharp there against it. Also TorchSharp's native sources, at the version referenced.
# Usage: scripts/device/pack.sh OUT_DIR [TORCHSHARP_GIT_DIR]
#   OUT_DIR gets app.tar.xz (and torchsharp-native.tar.xz when TORCHSHARP_GIT_DIR, a git directory of
#   dotnet/TorchSharp at the referenced version, is given: e.g. what the library's `fetch github:dotnet/TorchSharp` brings).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$(mkdir -p "$1" && cd "$1" && pwd)
torchsharp_git=${2:-}
# Only this pack travels (carried as a folder): no older pack beside it.
rm -f "$out"/*.tar.zst "$out"/*.tar.xz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Published from a copy of the tree (tracked and untracked, not ignored): a self-contained publish in place would
# turn the checkout's bin/ folders into self-contained builds under whatever runs from them.
mkdir "$work/tree"
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$work/tree" -xf -
for project in src/Server src/Jac bench/JacService.Bench; do
  dotnet publish "$work/tree/$project" -c Release -r linux-x64 --self-contained -o "$work/app" -v q -nologo
done
# libtorch's files are exactly what its NuGet package ships: remove those, and the TorchSharp native built against it.
natives=$(find ~/.nuget/packages/libtorch-cpu-linux-x64 -path '*runtimes/linux-x64/native/*' -type f -printf '%f\n' | sort -u)
for f in $natives libLibTorchSharp.so; do rm -f "$work/app/$f"; done
# Windows ORT binary and symbols are dead weight on Linux.
rm -f "$work/app"/*.dll.pdb "$work/app"/onnxruntime.dll "$work/app"/*.pdb
# xz, not zstd: the GPU machine may lack a zstd binary, and Python unpacks xz with its standard library.
tar -C "$work" -cf - app | xz -9e -T0 > "$out/app.tar.xz"
# For the TLS bar (check.sh, JAC_CHECK_CPU_BARS=1) on a machine that may lack openssl: throw-away, valid 30 days.
rm -rf "$out/tls"
bench/bench_certs.sh "$out/tls" 30

if [[ -n "$torchsharp_git" ]]; then
  version=$(git --git-dir="$torchsharp_git" show HEAD:build/BranchInfo.props | sed -n 's/.*<\(Major\|Minor\|Patch\)Version>\([0-9]*\)<.*/\2/p' | paste -sd.)
  referenced=$(sed -n 's/.*Include="TorchSharp" Version="\([^"]*\)".*/\1/p' Directory.Packages.props | head -1)
  [[ "$version" == "$referenced" ]] || { echo "TorchSharp sources are $version, the project references $referenced" >&2; exit 1; }
  git --git-dir="$torchsharp_git" archive --format=tar HEAD src/Native | xz -9e > "$out/torchsharp-native.tar.xz"
fi
du -b "$out"/*.tar.xz
