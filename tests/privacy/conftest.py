"""Fixtures of the privacy tests: the real backends of ``tests/reliability/sink_harness.py``."""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "reliability"))

from sink_harness import backend_factory, no_cloud_configuration  # noqa: E402, F401
