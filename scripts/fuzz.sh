#!/usr/bin/env bash
# Fuzzes one harness of tests/JacService.Fuzz with afl-fuzz for a given time (docs/security.md, "Fuzzing").
#
#   scripts/fuzz.sh <model|model-ort|request> <seconds> [out-dir]
#   scripts/fuzz.sh build       (only the instrumented build, for runs with FUZZ_SKIP_BUILD=1)
#
# Publishes the harness, instruments JacService.Core, JacService.Server and Google.Protobuf with SharpFuzz, writes the
# seed corpus from the fixtures and runs afl-fuzz. Prints the executions, paths (corpus entries) and crashes from afl's
# fuzzer_stats, replays every crash to show its exception, and exits 1 if there was any crash or hang.
# Settings (environment): FUZZ_TIMEOUT_MS (per input, default 10000), FUZZ_SKIP_BUILD=1 (reuse the last instrumented
# build, e.g. for a second harness), FUZZ_BUILD_DIR (default artifacts/fuzz/build).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

harness=${1:-}
seconds=${2:-}
[ "$harness" = build ] && seconds=0
if [[ ! "$harness" =~ ^(model|model-ort|request|build)$ || ! "$seconds" =~ ^[0-9]+$ ]]; then
  echo "usage: scripts/fuzz.sh <model|model-ort|request> <seconds> [out-dir]" >&2
  exit 2
fi
out=${3:-artifacts/fuzz/$harness}
build=${FUZZ_BUILD_DIR:-artifacts/fuzz/build}
timeout_ms=${FUZZ_TIMEOUT_MS:-10000}
tools=artifacts/fuzz/tools

command -v afl-fuzz >/dev/null || { echo "afl-fuzz not found: apt-get install afl++ (scripts/install-test-deps.sh does)" >&2; exit 1; }

if [ "${FUZZ_SKIP_BUILD:-}" != 1 ] || [ ! -f "$build/JacService.Fuzz.dll" ]; then
  [ -x "$tools/sharpfuzz" ] || dotnet tool install SharpFuzz.CommandLine --version 2.3.0 --tool-path "$tools" >/dev/null
  rm -rf "$build"
  dotnet publish tests/JacService.Fuzz -c Release -o "$build" -p:SatelliteResourceLanguages=en --nologo -v quiet
  # In place: the published copy is the instrumented one; the normal build stays untouched.
  for dll in JacService.Core.dll JacService.Server.dll Google.Protobuf.dll; do
    "$tools/sharpfuzz" "$build/$dll"
  done
fi

[ "$harness" = build ] && exit 0

rm -rf "$out"
mkdir -p "$out"
dotnet "$build/JacService.Fuzz.dll" "$harness" seeds "$out/seeds"

# No UI, no CPU binding and no core-pattern or governor checks: this runs beside other work, as an unprivileged job.
export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_AFFINITY=1
export JACSERVICE_ROOT="$root"
set +e
afl-fuzz -i "$out/seeds" -o "$out/findings" -t "$timeout_ms" -m none -V "$seconds" -- dotnet "$build/JacService.Fuzz.dll" "$harness" > "$out/afl.log" 2>&1
afl_rc=$?
set -e

stats="$out/findings/default/fuzzer_stats"
if [ ! -f "$stats" ]; then
  echo "afl-fuzz exited ($afl_rc) without statistics; the end of $out/afl.log:" >&2
  tail -n 30 "$out/afl.log" >&2
  exit 1
fi
stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
crashes=$(stat saved_crashes)
hangs=$(stat saved_hangs)
echo "harness=$harness seconds=$seconds executions=$(stat execs_done) execs_per_sec=$(stat execs_per_sec) paths=$(stat corpus_count) crashes=$crashes hangs=$hangs stability=$(stat stability) coverage=$(stat bitmap_cvg)"

shopt -s nullglob
findings=("$out"/findings/default/crashes/id* "$out"/findings/default/hangs/id*)
if [ ${#findings[@]} -gt 0 ]; then
  echo "findings (replayed without afl; inputs in $out/findings/default/crashes and hangs):"
  dotnet "$build/JacService.Fuzz.dll" "$harness" replay "${findings[@]}" | sed 's/^/  /' || true
fi
[ "$crashes" = 0 ] && [ "$hangs" = 0 ]
