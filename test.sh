#!/usr/bin/env bash
# One command: install what the tests need (apt packages included), build, and run every test.
set -euo pipefail
cd "$(dirname "$0")"

scripts/install-test-deps.sh
# Docker engine, local base images and helm for tests/JacService.Container.Tests (reused when already there).
scripts/install-container-deps.sh
dotnet build JacService.sln -c Release
dotnet test JacService.sln -c Release --no-build --logger "console;verbosity=normal" "$@"
