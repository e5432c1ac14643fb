#!/usr/bin/env bash
# One command: install what the tests need (apt packages included), build, and run every test.
set -euo pipefail
cd "$(dirname "$0")"

scripts/install-test-deps.sh
# Docker engine, local base images and helm for tests/JacService.Container.Tests (reused when already there).
scripts/install-container-deps.sh
dotnet build JacService.sln -c Release

# The projects run in parallel and their output interleaves, so every failure is printed again at the very end.
# The fuzz tests run afterwards, alone: afl-fuzz keeps a core busy for minutes, which on a 2-core machine is half of
# what the integration tests' servers would otherwise get.
# A test project with no test starting or finishing for 20 minutes is stopped (VSTest's blame collector) instead of
# holding CI to its own limit; xunit has named its long-running tests by then (tests/xunit.runner.json), and
# print-test-failures.py lists them. No dump: a libtorch process's dump is gigabytes.
results=TestResults/run-$(date +%Y%m%d-%H%M%S)
status=0
common=(-c Release --no-build --logger "console;verbosity=normal" --logger trx --results-directory "$results"
  --blame-hang-timeout 20m --blame-hang-dump-type none)
dotnet test JacService.sln "${common[@]}" --filter "FullyQualifiedName!~JacService.Fuzz.Tests" "$@" || status=$?
dotnet test tests/JacService.Fuzz.Tests "${common[@]}" "$@" || status=$?
python3 scripts/print-test-failures.py "$results"
exit $status
