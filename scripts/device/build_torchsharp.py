#!/usr/bin/env python3
"""Compiles TorchSharp's native sources (libLibTorchSharp) against a libtorch they were not written for.

TorchSharp 0.107 is written against libtorch 2.10; the GPU machine has torch 2.11. One C++ API change there would
fail a whole file (THSTensor.cpp holds most of what the server calls), and the device check has one try. So when a
file fails, every top-level function the compiler's errors point into is cut out and the file is compiled again (up
to --rounds times): the library then lacks only those exports, which .NET resolves lazily, so only a call that reaches
one of them fails, with EntryPointNotFoundException naming it. What was cut is listed in the log.

    build_torchsharp.py SRC_DIR OBJ_DIR LOG [--jobs N] [--rounds N] -- COMPILER_FLAGS...
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys


def top_level_blocks(text):
    """(start, end) offsets of each top-level brace block with its header: from the end of the previous top-level
    statement to the closing brace. Comments, strings and character literals are skipped."""
    blocks = []
    depth = 0
    statement_start = 0
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            i = text.find("\n", i)
            i = n if i < 0 else i
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c == '"' or c == "'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c == "#" and depth == 0 and (i == 0 or text[i - 1] == "\n"):
            # A preprocessor line at top level ends the statement before it.
            end = text.find("\n", i)
            i = n if end < 0 else end
            statement_start = i
            continue
        if c == "{":
            if depth == 0:
                block_start = statement_start
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                blocks.append((block_start, i + 1))
                statement_start = i + 1
        elif c == ";" and depth == 0:
            statement_start = i + 1
        i += 1
    return blocks


def cut_functions(path, lines):
    """Removes the top-level blocks holding any of `lines` (1-based); returns their first header lines."""
    with open(path) as f:
        text = f.read()
    offsets = [0]
    for line in text.split("\n"):
        offsets.append(offsets[-1] + len(line) + 1)
    targets = {offsets[l - 1] for l in lines if 0 < l <= len(offsets) - 1}
    cut = []
    pieces, last = [], 0
    for start, end in top_level_blocks(text):
        if any(start <= t < end for t in targets):
            header = " ".join(text[start:end].split("{", 1)[0].split())[:160]
            # Namespaces and extern "C" blocks hold everything: cutting one would cut the file.
            if header.startswith("namespace") or header.startswith('extern "C"'):
                continue
            cut.append(header)
            pieces.append(text[last:start])
            pieces.append("\n" * text.count("\n", start, end))  # keeps later line numbers
            last = end
    pieces.append(text[last:])
    with open(path, "w") as f:
        f.write("".join(pieces))
    return cut


def compile_one(source, obj_dir, flags, rounds):
    name = os.path.basename(source)
    log = []
    for attempt in range(rounds + 1):
        run = subprocess.run(["g++", *flags, "-c", source, "-o", os.path.join(obj_dir, name + ".o")],
                             capture_output=True, text=True)
        if run.returncode == 0:
            return name, True, log
        errors = run.stderr
        log.append(f"--- {name}, attempt {attempt + 1}: failed\n{errors[-6000:]}")
        # Lines of this file the errors are reported at, or instantiated from ("required from here").
        lines = {int(m) for m in re.findall(re.escape(source) + r":(\d+):", errors)}
        if not lines or attempt == rounds:
            break
        cut = cut_functions(source, lines)
        if not cut:
            log.append(f"--- {name}: the errors are outside any function; not compiled")
            break
        log.append(f"--- {name}: cut {len(cut)} function(s) and compiling again:\n  " + "\n  ".join(cut))
    return name, False, log


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("src")
    parser.add_argument("obj")
    parser.add_argument("log")
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=4)
    # Everything after "--" goes to the compiler as it is.
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    flags = argv[split + 1:]
    os.makedirs(args.obj, exist_ok=True)
    sources = sorted(os.path.join(args.src, f) for f in os.listdir(args.src) if f.endswith((".cpp", ".c")))
    # Biggest first: THSTensor.cpp and THSNN.cpp set the wall time.
    sources.sort(key=os.path.getsize, reverse=True)
    failed, patched = [], []
    with open(args.log, "a") as log, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for name, ok, lines in pool.map(lambda s: compile_one(s, args.obj, flags, args.rounds), sources):
            for line in lines:
                log.write(line + "\n")
            if not ok:
                failed.append(name)
                log.write(f"FAILED {name}\n")
            elif lines:
                patched.append(name)
    print(f"{len(sources) - len(failed)} of {len(sources)} compiled"
          + (f"; with functions cut: {', '.join(patched)}" if patched else "")
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
