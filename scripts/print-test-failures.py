#!/usr/bin/env python3
"""Prints every failed test in the TRX files under a folder, last, so a log's tail names them.

dotnet test runs the projects in parallel and interleaves their output; a failure's name and message can end up
hundreds of lines above the end of the log, where a CI system that keeps only the tail never shows them. A run that
was aborted (a test host that crashed, or one the hang timeout stopped) is listed too, with the tests xunit reported
as long-running in it, which is where a hung test is named.
"""
import pathlib
import re
import sys
import xml.etree.ElementTree as ET

NS = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
MESSAGE_LINES = 6


def failures(folder):
    for trx in sorted(pathlib.Path(folder).rglob("*.trx")):
        root = ET.parse(trx).getroot()
        for result in root.iterfind(".//t:UnitTestResult", NS):
            if result.get("outcome") != "Failed":
                continue
            message = result.findtext("t:Output/t:ErrorInfo/t:Message", default="", namespaces=NS)
            trace = result.findtext("t:Output/t:ErrorInfo/t:StackTrace", default="", namespaces=NS)
            yield result.get("testName"), result.get("duration"), message, trace


def aborted_runs(folder):
    for trx in sorted(pathlib.Path(folder).rglob("*.trx")):
        root = ET.parse(trx).getroot()
        # xunit echoes each failed test's name to stderr as "... [FAIL]", which the TRX records as a run error too;
        # those are failures, listed below, not an aborted run.
        errors = [text for info in root.iterfind(".//t:RunInfos/t:RunInfo", NS) if info.get("outcome") == "Error"
                  for text in [info.findtext("t:Text", default="", namespaces=NS)]
                  if not text.rstrip().endswith("[FAIL]")]
        if not errors:
            continue
        output = root.findtext("t:ResultSummary/t:Output/t:StdOut", default="", namespaces=NS)
        assembly = re.search(r"Discovering: (\S+)", output)
        # The last report of each long-running test: the one with the longest elapsed time.
        running = dict(re.findall(r"\[Long Running Test\] '([^']+)', Elapsed: (\S+)", output))
        yield assembly.group(1) if assembly else trx.name, errors, running


def main():
    aborted = list(aborted_runs(sys.argv[1]))
    for assembly, errors, running in aborted:
        print(f"\n===== ABORTED {assembly} =====")
        for error in errors:
            print(f"    {error}")
        for name, elapsed in running.items():
            print(f"    still running after {elapsed}: {name}")
    found = list(failures(sys.argv[1]))
    if not found:
        return
    print(f"\n===== {len(found)} failed test(s) =====")
    for name, duration, message, trace in found:
        print(f"FAILED {name} [{duration}]")
        for line in message.strip().splitlines()[:MESSAGE_LINES]:
            print(f"    {line}")
        frames = [l.strip() for l in trace.splitlines() if "JacService" in l]
        if frames:
            print(f"    {frames[0][:300]}")


if __name__ == "__main__":
    main()
