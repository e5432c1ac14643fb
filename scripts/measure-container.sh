#!/usr/bin/env bash
# Measures the image (docs/containers.md): its size, and the cold start of a container to SERVING with the example
# repository: from `docker run` to the first grpc.health.v1.Health/Check answer SERVING on the published port.
# Needs the image (docker build -t jacservice:local .) and Debian's python3-grpcio (scripts/install-test-deps.sh).
set -euo pipefail
image=${1:-jacservice:local}
runs=${RUNS:-5}
export DOCKER_API_VERSION=${DOCKER_API_VERSION:-1.41}

bytes=$(docker image inspect --format '{{.Size}}' "$image")
echo "image $image: $((bytes / 1000000)) MB ($((bytes / 1048576)) MiB)"

for i in $(seq 1 "$runs"); do
  port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  /usr/bin/python3 - "$image" "$port" <<'PY'
import subprocess, sys, time, grpc
image, port = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
cid = subprocess.check_output(["docker", "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:50051", image], text=True).strip()
try:
    while True:
        # A fresh channel per try: a failed connect would otherwise wait out gRPC's reconnect backoff (1 s and up).
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                # HealthCheckRequest{} is empty; HealthCheckResponse{status: SERVING} is field 1 = 1.
                if channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=1) == b"\x08\x01":
                    break
            except grpc.RpcError:
                pass
        if time.monotonic() - t0 > 120:
            sys.exit("not SERVING after 120 s")
        time.sleep(0.01)
    print(f"cold start to SERVING: {time.monotonic() - t0:.2f} s")
finally:
    subprocess.run(["docker", "rm", "-f", cid], stdout=subprocess.DEVNULL, check=False)
PY
done
