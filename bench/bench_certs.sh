#!/usr/bin/env bash
# A throw-away CA and a server certificate for 127.0.0.1 (ECDSA P-256, openssl) for the TLS benchmarks: DIR gets
# ca.crt, ca.key, server.crt and server.key. Never committed; made per run, or by scripts/device/pack.sh for a
# machine that may lack openssl.
# Usage: bench/bench_certs.sh DIR [DAYS]   (DAYS valid, 1 by default)
set -euo pipefail
dir=$1 days=${2:-1}
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days "$days" -subj "/CN=bench CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" -addext basicConstraints=critical,CA:TRUE 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial -days "$days" \
  -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
