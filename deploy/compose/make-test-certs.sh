#!/usr/bin/env bash
# Makes a throw-away CA, a server certificate and a client certificate for trying TLS with docker-compose.tls.yml:
#   deploy/compose/make-test-certs.sh [DIR]       (default deploy/compose/tls, which git ignores)
# DIR gets ca.crt (the CA, what clients trust), tls.crt and tls.key (the server's, for localhost, 127.0.0.1 and
# jacservice), client.crt and client.key (for mutual TLS): the file names of a cert-manager Secret. For tests and
# trials only; never commit the keys.
set -euo pipefail
dir="${1:-$(cd "$(dirname "$0")" && pwd)/tls}"
mkdir -p "$dir"
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

key ca.key
openssl req -x509 -new -key ca.key -days 30 -subj "/CN=JacService trial CA" -out ca.crt \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
issue() { # name, subject, extended key usage, extra extension lines
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$2" -out "$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=%s\n%s\n' "$3" "${4:-}" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -extfile "$1.ext" -out "$1.crt" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
# The server's certificate also allows client auth: with mutual TLS the container's HEALTHCHECK presents it.
issue tls localhost serverAuth,clientAuth "subjectAltName=DNS:localhost,DNS:jacservice,IP:127.0.0.1"
issue client jac-trial-client clientAuth
rm -f ca.srl
# The server runs as UID 1654 in the image: it must be able to read its key from the bind mount.
chmod 644 tls.key
echo "certificates in $dir: ca.crt, tls.crt/tls.key (server), client.crt/client.key"
