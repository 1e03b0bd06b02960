"""The delivery core sits at the bottom of the import graph: no traitlets, no sinks, no EventLog.

Importing ``telemetry_sinks`` itself pulls in everything (the EventLog, the sinks,
traitlets), so the check imports every module of ``delivery/`` in a fresh
interpreter where the package ``telemetry_sinks`` is an empty namespace: whatever
is in ``sys.modules`` afterwards was imported by the delivery core itself.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import telemetry_sinks.delivery

PACKAGE_DIR = Path(telemetry_sinks.delivery.__file__).resolve().parents[1]

#: What the delivery core must never import (directly or through another module).
FORBIDDEN = ("traitlets", "telemetry_sinks.sinks", "telemetry_sinks.eventlog",
             "telemetry_sinks.registry", "telemetry_sinks.server", "telemetry_sinks.config")

_PROBE = """
import json, sys, types
package = types.ModuleType("telemetry_sinks")
package.__path__ = [sys.argv[1]]
sys.modules["telemetry_sinks"] = package
import importlib
for name in json.loads(sys.argv[2]):
    importlib.import_module(name)
print(json.dumps(sorted(sys.modules)))
"""


def delivery_modules() -> list[str]:
    names = ["telemetry_sinks.delivery"]
    for info in pkgutil.iter_modules(telemetry_sinks.delivery.__path__):
        names.append(f"telemetry_sinks.delivery.{info.name}")
    return names


def test_every_delivery_module_is_checked():
    names = delivery_modules()
    for expected in ("engine", "adapter", "options", "toolkit", "spool", "replay", "metrics"):
        assert f"telemetry_sinks.delivery.{expected}" in names


def test_the_delivery_core_imports_no_traitlets_no_sinks_and_no_eventlog():
    names = delivery_modules()
    probe = subprocess.run(
        [sys.executable, "-c", _PROBE, str(PACKAGE_DIR), json.dumps(names)],
        capture_output=True, text=True, timeout=120,
    )
    assert probe.returncode == 0, probe.stderr
    loaded = json.loads(probe.stdout)
    assert set(names) <= set(loaded)  # the probe really imported them
    found = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]
    assert found == []
    own = sorted(m for m in loaded if m.startswith("telemetry_sinks.") and not m.startswith(
        "telemetry_sinks.delivery"))
    # The leaf modules the core may use: encoding, errors, secret masking, file writes.
    assert set(own) <= {"telemetry_sinks.capsule", "telemetry_sinks.errors",
                        "telemetry_sinks.masking", "telemetry_sinks.fileio"}
