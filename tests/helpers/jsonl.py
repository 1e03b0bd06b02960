"""Reading JSON-lines files (what the file sinks, the collector and dead-letter files write)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_jsonl(path: Any) -> list[Any]:
    """Every line of ``path`` decoded; [] when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["read_jsonl"]
