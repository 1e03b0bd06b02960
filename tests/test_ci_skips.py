"""Under CI, a skipped test fails the run (the hook in tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent
CASES = '''
import pytest

def test_backend_missing():
    pytest.skip("backend missing")

@pytest.mark.xfail(reason="known limit")
def test_known_limit():
    assert False
'''


def run(tmp_path: Path, ci: str | None) -> str:
    (tmp_path / "test_cases.py").write_text(CASES)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(TESTS)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "conftest", "-c", os.devnull,
         "--rootdir", str(tmp_path), str(tmp_path / "test_cases.py")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def test_under_ci_a_skip_fails_and_an_xfail_stays_expected(tmp_path):
    assert "1 failed, 1 xfailed" in run(tmp_path, "true")


def test_outside_ci_a_skip_is_a_skip(tmp_path):
    assert "1 skipped, 1 xfailed" in run(tmp_path, None)
    assert "1 skipped, 1 xfailed" in run(tmp_path, "false")
