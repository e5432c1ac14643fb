#!/usr/bin/env bash
# Installs what the tests need on Debian 12 beyond the .NET SDK: Debian's PyTorch/ONNX (fixture references and the
# functorch peer), grpcio and protoc with the gRPC Python plugin (the Python client test), OpenBLAS, and Prometheus
# (the scrape test starts its own server on loopback; the package's service is not needed).
set -euo pipefail

packages=(python3-torch python3-onnx python3-numpy python3-grpcio protobuf-compiler protobuf-compiler-grpc libopenblas0-openmp prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
