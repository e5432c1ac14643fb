#!/usr/bin/env bash
# Fuzzes one harness of tests/JacService.Fuzz with afl-fuzz for a given time (docs/security.md, "Fuzzing").
#
#   scripts/fuzz.sh <model|model-ort|request> <seconds> [out-dir]
#   scripts/fuzz.sh build       (only the instrumented build, for runs with FUZZ_SKIP_BUILD=1)
#
# Publishes the harness, instruments JacService.Core, JacService.Server and Google.Protobuf with SharpFuzz, writes the
# seed corpus from the fixtures and runs afl-fuzz. Prints the executions, paths (corpus entries) and crashes from afl's
# fuzzer_stats, replays every crash to show its exception and every hang to see whether it is one when run alone, and
# exits 1 if there was any crash or confirmed hang.
# Settings (environment): FUZZ_TIMEOUT_MS (per input, default 10000), FUZZ_SKIP_BUILD=1 (reuse the last instrumented
# build, e.g. for a second harness), FUZZ_BUILD_DIR (default artifacts/fuzz/build), FUZZ_SEEDS_MATCHING (keep only
# the seeds whose file names contain it, e.g. RestInfer: the request harness's coverage is noisy with its batcher's
# threads, and in minutes afl never reaches most of the 300 seeds).
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
if [ -n "${FUZZ_SEEDS_MATCHING:-}" ]; then
  find "$out/seeds" -type f ! -name "*${FUZZ_SEEDS_MATCHING}*" -delete
  [ -n "$(ls "$out/seeds")" ] || { echo "no seed of $harness matches '$FUZZ_SEEDS_MATCHING'" >&2; exit 1; }
fi

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
crash_inputs=("$out"/findings/default/crashes/id*)
hang_inputs=("$out"/findings/default/hangs/id*)
if [ $((${#crash_inputs[@]} + ${#hang_inputs[@]})) -gt 0 ]; then
  echo "findings (replayed without afl; inputs in $out/findings/default/crashes and hangs):"
fi
if [ ${#crash_inputs[@]} -gt 0 ]; then
  dotnet "$build/JacService.Fuzz.dll" "$harness" replay "${crash_inputs[@]}" | sed 's/^/  /' || true
fi
# afl times an input inside its fork server, beside whatever else runs on the machine (in the suite, the other test
# classes). A hang counts when the input, run again alone, still takes longer than the limit, fails, or has not ended
# at three times the limit.
confirmed=0
for input in "${hang_inputs[@]}"; do
  set +e
  line=$(timeout $((3 * timeout_ms / 1000 + 10)) dotnet "$build/JacService.Fuzz.dll" "$harness" replay "$input")
  replay_rc=$?
  set -e
  took=$(sed -nE 's/.*\(([0-9.]+) s\)$/\1/p' <<< "$line")
  if [ $replay_rc = 124 ]; then
    echo "  $(basename "$input"): a hang, still running after $((3 * timeout_ms / 1000 + 10)) s alone"
    confirmed=$((confirmed + 1))
  elif [ $replay_rc != 0 ]; then
    sed 's/^/  /' <<< "$line"
    confirmed=$((confirmed + 1))
  elif [ -z "$took" ] || awk -v t="$took" -v limit="$timeout_ms" 'BEGIN { exit !(t * 1000 > limit) }'; then
    echo "  $line (a hang: over the ${timeout_ms} ms limit alone too)"
    confirmed=$((confirmed + 1))
  else
    echo "  $line (not a hang: within the ${timeout_ms} ms limit alone)"
  fi
done
echo "hangs_confirmed=$confirmed"
[ "$crashes" = 0 ] && [ "$confirmed" = 0 ]
