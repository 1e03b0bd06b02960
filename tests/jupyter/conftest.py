"""Tests that start real Jupyter applications (see jupyter_apps.py); they read Kafka back like tests/kafka."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "kafka"))
