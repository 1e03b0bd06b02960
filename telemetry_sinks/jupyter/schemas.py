"""Jupyter's own event schemas, with the personal-data categories their properties lack.

Jupyter Server's schemas say ``personal-data: true`` for a whole schema, and
JupyterHub's say nothing, but no property carries ``categories``, so a policy could
not tell a file path from an action.  :data:`JUPYTER_PROPERTY_CATEGORIES` names
them; :func:`with_categories` makes the copy this library registers.  A property
with a category is also taken out of ``required``: the policy may remove it, and the
capsule without it must still validate where it is read again (the collector).

A collector that receives Jupyter's events (from an HTTP sink or from browsers)
registers the same copies (and the JupyterLab extension's schemas)::

    from telemetry_sinks.jupyter import export_jupyter_schemas
    c.EventLog.schema_paths = [export_jupyter_schemas("/var/lib/telemetry-sinks/jupyter-schemas")]
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..schema import UNRESTRICTED, iter_schema_files, load_schema_file, normalize_category

CONTENTS_SERVICE = "https://events.jupyter.org/jupyter_server/contents_service/v1"
KERNEL_ACTIONS = "https://events.jupyter.org/jupyter_server/kernel_actions/v1"
GATEWAY_CLIENT = "https://events.jupyter.org/jupyter_server/gateway_client/v1"
HUB_SERVER_ACTION = "https://schema.jupyter.org/jupyterhub/events/server-action"

#: Personal-data categories of the properties of Jupyter's own schemas (which declare none).
#: File paths name users' projects and often the users; user names identify them.
JUPYTER_PROPERTY_CATEGORIES: dict[str, dict[str, list[str]]] = {
    CONTENTS_SERVICE: {
        "path": ["user-identifiable-information"],
        "source_path": ["user-identifiable-information"],
    },
    KERNEL_ACTIONS: {},
    GATEWAY_CLIENT: {},
    HUB_SERVER_ACTION: {"username": ["user-identifier"]},
}


def with_categories(body: Mapping[str, Any], categories: Mapping[str, list[str]]) -> dict[str, Any]:
    """A copy of schema ``body`` whose top-level properties carry ``categories`` where they have none.

    Properties with a personal-data category are no longer ``required`` (see the module doc).
    """
    annotated = copy.deepcopy(dict(body))
    properties = annotated.get("properties")
    if not isinstance(properties, dict):
        return annotated
    for name, labels in categories.items():
        prop = properties.get(name)
        if isinstance(prop, dict) and "categories" not in prop:
            prop["categories"] = list(labels)
    personal = {
        name
        for name, prop in properties.items()
        if isinstance(prop, dict)
        and any(normalize_category(c) != UNRESTRICTED for c in prop.get("categories") or ())
    }
    required = annotated.get("required")
    if isinstance(required, list) and personal & set(required):
        annotated["required"] = [name for name in required if name not in personal]
    return annotated


def installed_schema_files() -> Iterator[Path]:
    """The schema files of the installed Jupyter Server and JupyterHub (those present), and
    those of this package's JupyterLab extension."""
    for package, folder in (("jupyter_server", "event_schemas"), ("jupyterhub", "event-schemas")):
        try:
            module = __import__(package)
        except ImportError:
            continue
        if module.__file__ is None:  # a namespace package: no files of its own
            continue
        directory = Path(module.__file__).parent / folder
        if directory.is_dir():
            yield from iter_schema_files(directory)
    yield from iter_schema_files(Path(__file__).parent / "event_schemas")


def jupyter_schemas(extra: Mapping[str, Mapping[str, list[str]]] | None = None) -> list[dict[str, Any]]:
    """The installed Jupyter schemas with categories (:data:`JUPYTER_PROPERTY_CATEGORIES`, then ``extra``)."""
    schemas = []
    for path in installed_schema_files():
        body = load_schema_file(path)
        schema_id = str(body.get("$id", ""))
        categories = {**JUPYTER_PROPERTY_CATEGORIES.get(schema_id, {}), **(extra or {}).get(schema_id, {})}
        schemas.append(with_categories(body, categories))
    return schemas


def export_jupyter_schemas(directory: str | os.PathLike) -> str:
    """Write :func:`jupyter_schemas` as JSON files into ``directory``; return it (for schema_paths)."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    for body in jupyter_schemas():
        name = str(body["$id"]).rstrip("/").replace("https://", "").replace("/", "_") + ".json"
        (target / name).write_text(json.dumps(body, indent=2, sort_keys=True), encoding="utf-8")
    return str(target)


__all__ = [
    "CONTENTS_SERVICE",
    "GATEWAY_CLIENT",
    "HUB_SERVER_ACTION",
    "JUPYTER_PROPERTY_CATEGORIES",
    "KERNEL_ACTIONS",
    "export_jupyter_schemas",
    "installed_schema_files",
    "jupyter_schemas",
    "with_categories",
]
