"""Loading traitlets configuration files, and the embedded default configuration.

Config files are the traitlets kind used by Jupyter (``c.EventLog.sinks = [...]``
in a ``.py`` file, or the same structure in ``.json``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from traitlets.config import Config
from traitlets.config.loader import ConfigFileNotFound, JSONFileConfigLoader, PyFileConfigLoader

from .errors import SinkConfigError

EXAMPLES_DIR = Path(__file__).parent / "examples"
EXAMPLE_SCHEMAS_DIR = EXAMPLES_DIR / "schemas"
EXAMPLE_EVENTS = EXAMPLES_DIR / "events.jsonl"


def load_config_file(path: str | os.PathLike) -> Config:
    """Load a traitlets config file (``.py`` or ``.json``) with errors that name the file."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise SinkConfigError(f"Config file {path} does not exist.")
    loader_cls: Any = JSONFileConfigLoader if path.suffix == ".json" else PyFileConfigLoader
    loader = loader_cls(path.name, path=str(path.parent))
    try:
        return loader.load_config()
    except ConfigFileNotFound:
        raise SinkConfigError(f"Config file {path} does not exist.") from None
    except SyntaxError as exc:
        raise SinkConfigError(f"Config file {path}, line {exc.lineno}: {exc.msg}.") from None
    except Exception as exc:
        raise SinkConfigError(f"Config file {path} failed to load: {exc}") from None


def default_config(events_dir: str | os.PathLike = "events") -> Config:
    """The embedded default: the bundled example schemas, recorded to rotating JSONL files.

    Capsules go to ``<events_dir>/events.jsonl``, rotated at 10 MiB with 5 backups.
    """
    c = Config()
    c.EventLog.schema_paths = [str(EXAMPLE_SCHEMAS_DIR)]
    c.EventLog.allowed_schemas = {
        "https://events.telemetry-sinks.org/example/app-launch": {
            "allowed_categories": [],
        },
        "https://events.telemetry-sinks.org/example/file-save": {
            "allowed_categories": [],
        },
    }
    c.EventLog.sinks = ["rotating_file"]
    c.RotatingFileSink.filename = str(Path(events_dir) / "events.jsonl")
    c.RotatingFileSink.max_bytes = 10 * 1024 * 1024
    c.RotatingFileSink.backup_count = 5
    return c
