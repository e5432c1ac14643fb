#!/usr/bin/env bash
# Installs what the tests need on Debian 12 beyond the .NET SDK: Debian's PyTorch/ONNX (fixture references and the
# functorch peer), grpcio and protoc with the gRPC Python plugin (the Python clients), Go with Debian's gRPC and
# protobuf modules and their protoc plugins (the Go example, built offline), CMake with Debian's gRPC C++ library (the
# C++ example), Node.js with the npm packages of the Node example, OpenBLAS, and Prometheus (the scrape test starts its
# own server on loopback; the package's service is not needed), and afl++ for the fuzz harnesses (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(python3-torch python3-onnx python3-numpy python3-grpcio protobuf-compiler protobuf-compiler-grpc libopenblas0-openmp prometheus afl++)
# The Python package (clients/python) is built offline into a venv: venv brings pip and setuptools (Debian's wheels),
# python3-wheel lets setuptools build the wheel pip installs.
packages+=(python3-venv python3-setuptools python3-wheel)
# golang-github-golang-protobuf-1-5-dev is named because golang-google-grpc-dev would otherwise settle for the 1.3
# API, which cannot marshal the messages protoc-gen-go (APIv2) generates.
packages+=(golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev
  protoc-gen-go protoc-gen-go-grpc)
# The C++ example: CMake, a compiler and Debian's gRPC C++ library; nlohmann's JSON reads the reference files.
packages+=(cmake g++ pkg-config libgrpc++-dev nlohmann-json3-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Any Node.js 18+ will do (a machine may have one from elsewhere); Debian's packages only when there is none.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Exactly the versions in package-lock.json. Neither package needs its install scripts (plain JavaScript).
(cd examples/node && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
