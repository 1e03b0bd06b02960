"""The schemas and events of the benchmarks.

* ``launch``: BinderHub's real launch schema (version 6, from the shared fixtures) and
  realistic launch events (providers, specs and origins as in the mybinder.org events
  archive, whose real lines are in the fixtures too).  It has no categorized property.
* ``session``: a larger schema written here (28 properties, nested objects, arrays of
  objects, personal-data categories at three levels) with a policy that drops the
  personal data, so that redaction runs on every event.
"""

from __future__ import annotations

import copy
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

from .common import FIXTURES

LAUNCH_SCHEMA_FILE = FIXTURES / "binderhub" / "launch-history" / "v6-a0c55e8" / "launch.json"
ARCHIVE_FILES = [
    FIXTURES / "mybinder_archive" / "from-binderlyzer-c956adf" / "events-2019-sample.reconstructed.jsonl",
    FIXTURES / "mybinder_archive" / "from-sydney-lesson-e1a67d9" / "events-2018-11-03.jsonl",
]

SESSION_ID = "https://bench.telemetry-sinks.org/notebook-session"

_USER_ID = ["user-identifier"]
_PII = ["user-identifiable-information"]

SESSION_SCHEMA: dict[str, Any] = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "$id": SESSION_ID,
    "version": 3,
    "title": "Notebook session",
    "description": "Written for the benchmarks: a larger event with nested data and personal data.",
    "type": "object",
    "required": ["session_id", "action", "success", "kernel", "timings"],
    "properties": {
        "session_id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
        "username": {"type": "string", "categories": _USER_ID},
        "user_email": {"type": "string", "categories": _PII},
        "client_ip": {"type": "string", "categories": _PII},
        "hub_url": {"type": "string"},
        "server_name": {"type": "string"},
        "action": {"enum": ["open", "save", "execute", "close", "restart"]},
        "success": {"type": "boolean"},
        "started_at": {"type": "string", "categories": ["action-timestamp"]},
        "duration_s": {"type": "number", "minimum": 0},
        "kernel": {
            "type": "object",
            "required": ["name", "language"],
            "properties": {
                "name": {"type": "string"},
                "language": {"enum": ["python", "r", "julia", "scala", "javascript"]},
                "version": {"type": "string"},
                "display_name": {"type": "string"},
                "pid": {"type": "integer", "minimum": 1},
            },
        },
        "notebook": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "categories": _PII},
                "size_bytes": {"type": "integer", "minimum": 0},
                "cell_count": {"type": "integer", "minimum": 0},
                "nbformat": {"type": "string"},
                "checkpoints": {"type": "integer", "minimum": 0},
                "trusted": {"type": "boolean"},
            },
        },
        "cells": {
            "type": "array",
            "maxItems": 50,
            "items": {
                "type": "object",
                "required": ["cell_type", "status"],
                "properties": {
                    "cell_type": {"enum": ["code", "markdown", "raw"]},
                    "execution_count": {"type": ["integer", "null"]},
                    "duration_ms": {"type": "number", "minimum": 0},
                    "status": {"enum": ["ok", "error", "aborted"]},
                    "output_bytes": {"type": "integer", "minimum": 0},
                    "author": {"type": "string", "categories": _USER_ID},
                },
            },
        },
        "resources": {
            "type": "object",
            "properties": {
                "cpu_limit": {"type": "number"},
                "mem_limit_bytes": {"type": "integer"},
                "gpu": {"type": "boolean"},
                "node": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "zone": {"type": "string"},
                        "pool": {"type": "string"},
                    },
                },
            },
        },
        "timings": {
            "type": "object",
            "required": ["total_ms"],
            "properties": {
                "spawn_ms": {"type": "number"},
                "kernel_start_ms": {"type": "number"},
                "total_ms": {"type": "number"},
            },
        },
        "extensions": {"type": "array", "items": {"type": "string"}, "maxItems": 40},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 64}},
        "error": {
            "type": ["object", "null"],
            "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
        },
        "browser": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "version": {"type": "string"},
                "platform": {"type": "string"},
                "user_agent": {"type": "string", "categories": _PII},
            },
        },
        "locale": {"type": "string"},
        "timezone": {"type": "string"},
        "referrer": {"type": "string", "categories": _PII},
        "feature_flags": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "lab_version": {"type": "string"},
        "server_version": {"type": "string"},
        "collaborators": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "categories": _USER_ID},
                    "role": {"enum": ["owner", "editor", "viewer"]},
                },
            },
        },
        "workspace": {"type": "string"},
        "git": {
            "type": "object",
            "properties": {
                "repo_url": {"type": "string"},
                "branch": {"type": "string"},
                "commit": {"type": "string", "pattern": "^[0-9a-f]{40}$"},
                "dirty": {"type": "boolean"},
            },
        },
    },
}

#: Keep unrestricted properties and action timestamps; drop user ids and other personal data.
SESSION_POLICY = {SESSION_ID: {"allowed_categories": ["action-timestamp"], "allowed_properties": []}}


@dataclass
class Workload:
    """One schema with its events, ready for our EventLog and for jupyter_events."""

    key: str
    title: str
    schema: dict[str, Any]
    schema_id: str
    allowed_schemas: Any
    events: list[dict[str, Any]]
    redacts: bool

    def jupyter_events_schema(self) -> dict[str, Any]:
        """A copy jupyter_events accepts: ``$id`` a URI, ``version`` a string."""
        schema = copy.deepcopy(self.schema)
        if "://" not in schema["$id"]:
            schema["$id"] = "https://" + schema["$id"]
        schema["version"] = str(schema["version"])
        return schema

    @property
    def mean_bytes(self) -> float:
        return sum(len(json.dumps(e, separators=(",", ":"))) for e in self.events) / len(self.events)


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _archive_specs() -> list[tuple[str, str]]:
    """(provider, spec) pairs of the real archive lines in the fixtures."""
    pairs = []
    for path in ARCHIVE_FILES:
        if path.is_file():
            for line in path.read_text().splitlines():
                if line.strip():
                    event = json.loads(line)
                    pairs.append((event["provider"], event["spec"]))
    return pairs


_REPOS = [
    "ipython/ipython-in-depth", "jupyterlab/jupyterlab-demo", "binder-examples/requirements",
    "QISKit/qiskit-tutorial", "ines/spacy-io-binder", "rapidsai/notebooks", "pangeo-data/pangeo",
    "data-8/materials-fa17", "numpy/numpy-tutorials", "jakevdp/PythonDataScienceHandbook",
    "fastai/fastbook", "holoviz/panel", "bokeh/bokeh-notebooks", "geopandas/geopandas",
]  # fmt: skip


def launch_workload(count: int = 1000, seed: int = 6) -> Workload:
    """BinderHub's launch schema (v6) and ``count`` realistic launch events."""
    schema = json.loads(LAUNCH_SCHEMA_FILE.read_text())
    rng = random.Random(seed)
    real = _archive_specs()
    providers = ["GitHub"] * 85 + ["Gist"] * 3 + ["GitLab"] * 4 + ["Git"] * 4 + ["Zenodo"] * 2 + [
        "Figshare", "Dataverse"
    ]
    origins = ["gke.mybinder.org", "gesis.mybinder.org", "ovh2.mybinder.org", "2i2c.mybinder.org"]
    request_origins = ["https://mybinder.org", "same-origin", "cross-site", "", "https://github.com"]
    events = []
    for _ in range(count):
        if real and rng.random() < 0.3:
            provider, spec = rng.choice(real)
        else:
            provider = rng.choice(providers)
            repo = rng.choice(_REPOS)
            if provider == "Zenodo":
                spec = f"10.5281/zenodo.{rng.randint(1_000_000, 9_999_999)}"
            elif provider == "Gist":
                spec = f"{repo.split('/')[0]}/{_hex(rng, 32)}/master"
            else:
                spec = f"{repo}/{rng.choice(['HEAD', 'main', 'master', 'gh-pages', _hex(rng, 7)])}"
        events.append(
            {
                "provider": provider,
                "spec": spec,
                "ref": _hex(rng, 40) if provider != "Zenodo" else str(rng.randint(1, 9)),
                "status": "success" if rng.random() < 0.97 else "failure",
                "build_token": rng.random() < 0.02,
                "origin": rng.choice(origins),
                "request_origin": rng.choice(request_origins),
            }
        )
    return Workload(
        key="launch",
        title="BinderHub launch v6 (7 properties, no categories)",
        schema=schema,
        schema_id=schema["$id"],
        allowed_schemas=[schema["$id"]],
        events=events,
        redacts=False,
    )


def session_workload(count: int = 1000, seed: int = 3) -> Workload:
    """The larger schema (redaction at three levels) and ``count`` events."""
    rng = random.Random(seed)
    events = []
    names = ["ada", "grace", "linus", "guido", "margaret", "alan", "barbara", "ken"]
    for i in range(count):
        user = rng.choice(names) + str(rng.randint(1, 500))
        cells = [
            {
                "cell_type": rng.choice(["code", "code", "markdown"]),
                "execution_count": rng.randint(1, 200) if rng.random() < 0.8 else None,
                "duration_ms": round(rng.uniform(0.1, 5000), 2),
                "status": "ok" if rng.random() < 0.95 else "error",
                "output_bytes": rng.randint(0, 200_000),
                "author": user,
            }
            for _ in range(rng.randint(2, 8))
        ]
        failed = rng.random() < 0.05
        events.append(
            {
                "session_id": _hex(rng, 32),
                "username": user,
                "user_email": f"{user}@example.org",
                "client_ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                "hub_url": "https://hub.example.org/",
                "server_name": rng.choice(["", "gpu", "big-memory"]),
                "action": rng.choice(["open", "save", "execute", "execute", "execute", "close"]),
                "success": not failed,
                "started_at": f"2026-03-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
                f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999999):06d}Z",
                "duration_s": round(rng.uniform(0.01, 7200), 3),
                "kernel": {
                    "name": "python3",
                    "language": "python",
                    "version": rng.choice(["3.11.7", "3.12.2", "3.13.0"]),
                    "display_name": "Python 3 (ipykernel)",
                    "pid": rng.randint(100, 60000),
                },
                "notebook": {
                    "path": f"work/{user}/analysis-{i % 37}.ipynb",
                    "size_bytes": rng.randint(1_000, 5_000_000),
                    "cell_count": len(cells) * 4,
                    "nbformat": "4.5",
                    "checkpoints": rng.randint(0, 30),
                    "trusted": rng.random() < 0.9,
                },
                "cells": cells,
                "resources": {
                    "cpu_limit": rng.choice([0.5, 1.0, 2.0, 4.0]),
                    "mem_limit_bytes": rng.choice([1, 2, 4, 8]) * 1024**3,
                    "gpu": rng.random() < 0.1,
                    "node": {
                        "name": f"node-{rng.randint(1, 40)}",
                        "zone": rng.choice(["eu-west-1a", "eu-west-1b", "us-east-1c"]),
                        "pool": rng.choice(["user", "user-highmem", "gpu"]),
                    },
                },
                "timings": {
                    "spawn_ms": round(rng.uniform(500, 60000), 1),
                    "kernel_start_ms": round(rng.uniform(200, 4000), 1),
                    "total_ms": round(rng.uniform(1000, 70000), 1),
                },
                "extensions": rng.sample(
                    ["jupyterlab-git", "jupyterlab-lsp", "ipywidgets", "jupyter-collaboration",
                     "jupyterlab_code_formatter", "jupyter-resource-usage", "nbdime", "voila"],
                    k=rng.randint(1, 6),
                ),  # fmt: skip
                "tags": rng.sample(["teaching", "research", "gpu", "spark", "course-101"], k=2),
                "error": {"type": "KernelDied", "message": "The kernel died unexpectedly."}
                if failed
                else None,
                "browser": {
                    "name": rng.choice(["Firefox", "Chrome", "Safari"]),
                    "version": f"{rng.randint(100, 140)}.0",
                    "platform": rng.choice(["Linux", "macOS", "Windows"]),
                    "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                },
                "locale": rng.choice(["en-GB", "de-DE", "fr-FR", "en-US"]),
                "timezone": rng.choice(["Europe/Berlin", "UTC", "America/New_York"]),
                "referrer": "https://hub.example.org/hub/home",
                "feature_flags": {"new_ui": rng.random() < 0.5, "rtc": rng.random() < 0.3},
                "lab_version": "4.2.5",
                "server_version": "2.14.2",
                "collaborators": [
                    {"username": rng.choice(names), "role": rng.choice(["editor", "viewer"])}
                    for _ in range(rng.randint(0, 3))
                ],
                "workspace": f"ws-{rng.randint(1, 99)}",
                "git": {
                    "repo_url": f"https://github.com/{rng.choice(_REPOS)}",
                    "branch": rng.choice(["main", "dev", "feature/x"]),
                    "commit": _hex(rng, 40),
                    "dirty": rng.random() < 0.4,
                },
            }
        )
    return Workload(
        key="session",
        title=f"notebook session (bench/; {len(SESSION_SCHEMA['properties'])} properties, nested, "
        "redaction at 3 levels)",
        schema=SESSION_SCHEMA,
        schema_id=SESSION_ID,
        allowed_schemas=SESSION_POLICY,
        events=events,
        redacts=True,
    )


def workloads() -> list[Workload]:
    return [launch_workload(), session_workload()]


def sample_capsules(count: int, workload: Workload | None = None) -> list[dict[str, Any]]:
    """``count`` capsules as our EventLog makes them (validated, redacted), for the sink benchmarks."""
    from telemetry_sinks import EventLog

    workload = workload or launch_workload()
    log = EventLog(
        allowed_schemas=workload.allowed_schemas,
        load_schema_entry_points=False,
        handlers=[logging.NullHandler()],
    )
    log.register_schema(workload.schema)
    events = workload.events
    return [
        log.prepare(workload.schema_id, None, events[i % len(events)])  # type: ignore[misc]
        for i in range(count)
    ]

