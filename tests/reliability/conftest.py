"""Fixtures of the reliability tests: real backends for every available network sink."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from sink_harness import backend_factory, no_cloud_configuration  # noqa: E402, F401
