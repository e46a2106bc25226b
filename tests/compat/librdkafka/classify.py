#!/usr/bin/env python3
"""Classifies one test-runner log: PASS, FAIL or SKIP, from the runner's summary table.

    classify.py LOG EXIT_CODE
A test passes when the runner exited 0 and reported ALL TESTS PASSED with at least one of its
(non-<MAIN>) rows PASSED; it is a skip when every row was SKIPPED (mock-only or filtered tests).
"""
import re
import sys

log, rc = sys.argv[1], int(sys.argv[2])
text = re.sub(r"\x1b\[[0-9;]*m", "", open(log, errors="replace").read())
rows = re.findall(r"^\|\s*(\d{4}\S*)\s*\|\s*(PASSED|FAILED|SKIPPED|RUNNING)\s*\|", text, re.M)
states = {s for _, s in rows}
if rc == 0 and "ALL TESTS PASSED" in text and "PASSED" in states:
    print("PASS")
elif rc == 0 and states == {"SKIPPED"}:
    print("SKIP")
else:
    print("FAIL")
