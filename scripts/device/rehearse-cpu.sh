#!/usr/bin/env bash
# Rehearses the device check (scripts/device/check.sh) on a CPU machine, with stand-ins for what only the GPU machine
# has: libtorch from the NuGet package's CPU build in a folder of its own (reached through LD_LIBRARY_PATH, as the
# machine's torch/lib will be), the build's libLibTorchSharp (for the one compiled there), no graph library, and JAX
# only where it imports. Everything else runs as it will there: the pack unpacked by Python, the server started from
# it, every fixture against the references through the unpacked jac, the load runs, the summary.
# Usage: scripts/device/rehearse-cpu.sh OUT_DIR [PACK_DIR]   (after dotnet build -c Release and scripts/device/pack.sh)
set -euo pipefail
JAC_CHECK_DEVICE=cpu exec "$(dirname "$0")/check.sh" "$@"
