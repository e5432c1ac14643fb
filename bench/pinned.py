#!/usr/bin/env python3
"""Runs a command on a set of CPUs, so that a load generator and the server it measures do not share cores.

Usage: bench/pinned.py CPUS COMMAND [ARGS...]
  CPUS in taskset's list syntax ("0-7", "0,2,4-5"); empty runs COMMAND unpinned. The command replaces this process
  (same PID), so a script's $! is the command's own PID and /proc/$!/stat its CPU time. Python's standard library
  only: the GPU machine has no guarantee of taskset.
"""
import os
import sys


def cpus(spec):
    chosen = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        chosen.update(range(int(low), int(high or low) + 1))
    return chosen


if len(sys.argv) < 3:
    sys.exit(__doc__)
if sys.argv[1]:
    os.sched_setaffinity(0, cpus(sys.argv[1]))
os.execvp(sys.argv[2], sys.argv[2:])
