#!/usr/bin/env python3
"""Compiles TorchSharp's native sources (libLibTorchSharp) against a libtorch they were not written for.

TorchSharp 0.107 is written against libtorch 2.10; the GPU machine has torch 2.11. One C++ API change there would
fail a whole file (THSTensor.cpp holds most of what the server calls), and the device check has one try. So when a
file fails, every top-level declaration or function that the compiler's errors point into, in the file or in
TorchSharp's headers, is cut out and the file is compiled again (up to --rounds times): the library then lacks only
those exports, which .NET resolves lazily, so only a call that reaches one of them fails, with
EntryPointNotFoundException naming it. What was cut is listed in the log.

    build_torchsharp.py SRC_DIR OBJ_DIR LOG [--jobs N] [--rounds N] -- COMPILER_FLAGS...
"""

import argparse
import concurrent.futures
import os
import re
import subprocess
import sys
import threading


TRANSPARENT = ("namespace", 'extern "C"')


def top_level_units(text):
    """(start, end) offsets of each top-level declaration or definition: a statement ending in ';', or a brace block
    with its header (from the end of the unit before it). The insides of namespaces and extern "C" blocks count as top
    level. Comments, strings and character literals are skipped."""
    units = []
    stack = []  # per open brace: True where it opened a namespace or extern "C" block
    depth = 0  # open braces other than those
    unit_start = 0
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
            # A preprocessor line at top level ends the unit before it.
            end = text.find("\n", i)
            i = n if end < 0 else end
            unit_start = i
            continue
        if c == "{":
            transparent = depth == 0 and " ".join(text[unit_start:i].split()).startswith(TRANSPARENT)
            stack.append(transparent)
            if transparent:
                unit_start = i + 1
            else:
                depth += 1
        elif c == "}" and stack:
            if stack.pop():
                unit_start = i + 1
            else:
                depth -= 1
                if depth == 0:
                    units.append((unit_start, i + 1))
                    unit_start = i + 1
        elif c == ";" and depth == 0:
            units.append((unit_start, i + 1))
            unit_start = i + 1
        i += 1
    return units


def cut_units(path, lines):
    """Removes the top-level units that any of `lines` (1-based) falls in; returns the start of each, shortened."""
    with open(path) as f:
        text = f.read()
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    spans = [(starts[l - 1], starts[l]) for l in lines if 0 < l < len(starts)]
    cut = []
    pieces, last = [], 0
    for start, end in top_level_units(text):
        # A unit is cut where it holds an error line's text (not only the whitespace before it).
        body_start = start + len(text[start:end]) - len(text[start:end].lstrip())
        if any(body_start < line_end and line_start < end for line_start, line_end in spans):
            cut.append(" ".join(text[start:end].split("{", 1)[0].split())[:160])
            pieces.append(text[last:start])
            pieces.append("\n" * text.count("\n", start, end))  # keeps later line numbers
            last = end
    pieces.append(text[last:])
    # Other compilers may be reading this file (a header): they see the old text or the new, never half of it.
    temporary = path + ".cut"
    with open(temporary, "w") as f:
        f.write("".join(pieces))
    os.replace(temporary, path)
    return cut


# An error, or the place a template that failed was instantiated from; not the notes (candidates, declarations).
ERROR_AT = re.compile(r"^(?P<path>[^:\s]+):(?P<line>\d+):(?:\d+:)?\s+(?:(?:fatal )?error:|required from)", re.M)
cutting = threading.Lock()


def compile_one(source, src_dir, obj_dir, flags, rounds):
    name = os.path.basename(source)
    log = []
    for attempt in range(rounds + 1):
        run = subprocess.run(["g++", *flags, "-c", source, "-o", os.path.join(obj_dir, name + ".o")],
                             capture_output=True, text=True)
        if run.returncode == 0:
            return name, True, log
        errors = run.stderr
        log.append(f"--- {name}, attempt {attempt + 1}: failed\n{errors[-6000:]}")
        # The lines of TorchSharp's own files (this source or its headers) that the errors point at.
        lines = {}
        for m in ERROR_AT.finditer(errors):
            path = os.path.abspath(m["path"])
            if path.startswith(src_dir + os.sep):
                lines.setdefault(path, set()).add(int(m["line"]))
        if not lines or attempt == rounds:
            break
        cut = []
        with cutting:  # a header is shared by the compilers running beside this one
            for path, at in lines.items():
                cut += [f"{os.path.basename(path)}: {unit}" for unit in cut_units(path, at)]
        if not cut:
            log.append(f"--- {name}: the errors are outside any declaration or function; not compiled")
            break
        log.append(f"--- {name}: cut {len(cut)} declaration(s) or function(s) and compiling again:\n  " + "\n  ".join(cut))
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
    src_dir = os.path.abspath(args.src)
    sources = sorted(os.path.join(src_dir, f) for f in os.listdir(src_dir) if f.endswith((".cpp", ".c")))
    # Biggest first: THSTensor.cpp and THSNN.cpp set the wall time.
    sources.sort(key=os.path.getsize, reverse=True)
    failed, patched = [], []
    with open(args.log, "a") as log, concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
        for name, ok, lines in pool.map(lambda s: compile_one(s, src_dir, args.obj, flags, args.rounds), sources):
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
