# SPDX-License-Identifier: Apache-2.0
"""Records each test's outcome as a JSON line {"op": "torch_test", "test", "world",
"result", "device", "commit", "date", "command"} into $COMET_TEST_JSONL when it is set (the
GPU scripts set it, as for the C tests); a skipped test is recorded as "skip"."""
import datetime
import json
import os
import sys

import pytest


def _device():
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except Exception:  # no torch: the CPU tests still run
        return "none"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    path = os.environ.get("COMET_TEST_JSONL")
    if not path or not (report.when == "call" or (report.when == "setup" and report.skipped)):
        return
    result = "skip" if report.skipped else "pass" if report.passed else "fail"
    row = {"op": "torch_test", "test": item.name, "file": os.path.basename(str(item.fspath)),
           "world": 1, "result": result, "device": _device(),
           "commit": os.environ.get("COMET_TEST_COMMIT", "unknown"),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "command": " ".join(sys.argv)}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
