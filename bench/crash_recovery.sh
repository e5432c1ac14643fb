#!/usr/bin/env bash
# Crash recovery (issue 15): the image run as the Helm chart runs it (non-root, read-only root, /tmp tmpfs, models
# mounted read-only, ports on 127.0.0.1 only) with Docker's restart policy, loaded with mixed calls by three clients of
# the .NET client library (MaxAttempts 1; the default retries; those plus RetryUntilDeadline), then its server process killed with SIGKILL
# from the host; the time from the kill to SERVING again (grpc.health.v1) and every call's fate, per window
# (bench/JacService.Bench/CrashBench.cs). Needs the Docker engine and the image: scripts/install-container-deps.sh, then
# `docker build -t jacservice:local .` (or any run of the container tests, which build it).
# Usage: bench/crash_recovery.sh [rounds] [calls/s per client]   (defaults 3 and 50)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
rps=${2:-50}
export DOCKER_API_VERSION=${DOCKER_API_VERSION:-1.41}
name=jacservice-crash-$$
# The two models the traffic calls (mlp_tanh, pinn): what a restart must load before it serves them. MODELS=DIR for another.
models=${MODELS:-}
image=${IMAGE:-jacservice:local}

dotnet build bench/JacService.Bench -c Release -v q -nologo >/dev/null
work=""
if [ -z "$models" ]; then
  work=$(mktemp -d)
  cp -r tests/fixtures/models/mlp_tanh tests/fixtures/models/pinn "$work/"
  chmod -R a+rX "$work"
  models=$work
fi
# A fixed host port: Docker gives a restarted container a new random one.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# NETWORK=host: the server listens on the host's 127.0.0.1 itself, so while it is down a connection is refused, as a
# pod's address refuses it in Kubernetes; through Docker's port publishing the userland proxy accepts every connection
# and closes it when it cannot reach the container.
if [ "${NETWORK:-}" = host ]; then
  publish=(--network host -e "Urls=http://127.0.0.1:$port" -e "Telemetry__MetricsUrl=http://127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')")
else
  publish=(-p "127.0.0.1:$port:50051")
fi
docker run -d --name "$name" --restart=always --read-only --tmpfs /tmp \
  -v "$models:/models:ro" "${publish[@]}" \
  -e Logging__LogLevel__Default=Warning "$image" >/dev/null
trap 'docker rm -f "$name" >/dev/null; [ -z "$work" ] || rm -rf "$work"' EXIT

echo "# $(date -u +%FT%TZ) $(nproc) cores, load average before: $(cut -d' ' -f1-3 /proc/loadavg); image $image ($(docker image inspect -f '{{.Id}}' "$image" | cut -c8-19)), models: $(ls "$models" | tr '\n' ' '), network: ${NETWORK:-published port}"
dotnet bench/JacService.Bench/bin/Release/net10.0/linux-x64/JacService.Bench.dll --crash --container "$name" --port "$port" \
  --rounds "$rounds" --rps "$rps" "${@:3}"
echo "# restarts counted by Docker: $(docker inspect -f '{{.RestartCount}}' "$name")"
