"""Benchmarks of telemetry-sinks: ``python -m bench`` (see bench/README.md)."""

import sys as _sys
from pathlib import Path as _Path

_TESTS = str(_Path(__file__).resolve().parent.parent / "tests")
if _TESTS not in _sys.path:
    # tests/helpers/servers.py (free_port, ServerProcess, tansu_broker, wait_delivered, ...) is shared.
    _sys.path.insert(0, _TESTS)
