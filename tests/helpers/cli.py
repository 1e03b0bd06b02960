"""Running ``telemetry-sinks`` as a user would: ``python -m telemetry_sinks`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a run: this process's, without colour switches, on an xterm."""
    base = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    return {**base, "TERM": "xterm-256color", **extra}


def run(
    *args: Any,
    cwd: Any = None,
    stdin: str | None = None,
    extra_env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``telemetry-sinks ARGS...``; its exit code, stdout and stderr (text)."""
    return subprocess.run(
        [sys.executable, "-m", "telemetry_sinks", *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(**(extra_env or {})),
    )


__all__ = ["cli_env", "run"]
