#!/usr/bin/env bash
# The Python package's per-call overhead against a bare generated stub (bench/python_client_overhead.py): builds and
# starts the server on the fixture models, installs clients/python into a fresh venv (offline, Debian's setuptools),
# runs the comparison, stops the server.
# Usage: bench/python_client_overhead.sh [extra arguments for python_client_overhead.py]
set -euo pipefail
cd "$(dirname "$0")/.."
port=50998
venv=$(mktemp -d /tmp/jacservice-bench-venv.XXXXXX)

dotnet build src/Server -c Release -v q -nologo >/dev/null
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install -q --no-build-isolation --no-index --disable-pip-version-check clients/python
dotnet src/Server/bin/Release/net10.0/linux-x64/JacService.Server.dll --urls "http://127.0.0.1:$port" \
  --Models:Root=tests/fixtures/models --Telemetry:MetricsUrl=http://127.0.0.1:50997 \
  --Logging:LogLevel:Default=Warning >/dev/null 2>&1 &
server=$!
trap 'kill $server; rm -rf "$venv"' EXIT
"$venv/bin/python" bench/python_client_overhead.py --target "127.0.0.1:$port" "$@"
