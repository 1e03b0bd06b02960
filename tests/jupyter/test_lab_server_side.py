"""The server side of the JupyterLab extension without a browser: its schemas (every property
that can identify a person or reveal content has a category, and the default policy removes
it), the per-user consent store, the configuration's checks, and how an editable install's
extension is found."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import pytest
from traitlets import TraitError

from telemetry_sinks import EventLog
from telemetry_sinks.describe import describe_html
from telemetry_sinks.jupyter.lab import (
    ACTIVE_PANEL,
    CELL_EXECUTED,
    COMMAND_EXECUTED,
    DOCUMENT,
    LAB_PACKAGE,
    LAB_SCHEMAS,
    LABEXTENSIONS_DIR,
    SCHEMA_DIR,
    ConsentStore,
    JupyterLabTelemetry,
    add_labextension,
)
from telemetry_sinks.server.consent import UserConsent

PATH = ["user-identifiable-information"]
CONTENT = ["content"]
#: Every property that can name a person's files or show what they wrote, by schema.
PERSONAL = {
    COMMAND_EXECUTED: {("args", "path"): PATH},
    DOCUMENT: {("path",): PATH, ("old_path",): PATH},
    CELL_EXECUTED: {("path",): PATH, ("code",): CONTENT, ("outputs",): CONTENT, ("error_name",): CONTENT},
    ACTIVE_PANEL: {("path",): PATH},
}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.capsules: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.capsules.append(record.msg)


def lab_eventlog(allowed) -> tuple[EventLog, Capture]:
    capture = Capture()
    log = EventLog(schema_paths=[str(SCHEMA_DIR)], load_schema_entry_points=False, allowed_schemas=allowed,
                   handlers=[capture])
    return log, capture


def properties(body: dict, prefix: tuple = ()) -> dict[tuple, dict]:
    out = {}
    for name, prop in body.get("properties", {}).items():
        out[(*prefix, name)] = prop
        out.update(properties(prop, (*prefix, name)))
    return out


def test_the_personal_properties_have_categories_and_nothing_else_does():
    log, _ = lab_eventlog([])
    assert sorted(sid for sid, _ in log.schemas) == sorted(LAB_SCHEMAS)
    for sid in LAB_SCHEMAS:
        body = log.schema(sid).body
        found = {path: p["categories"] for path, p in properties(body).items() if p.get("categories")}
        assert found == PERSONAL[sid], sid
        assert body.get("additionalProperties") is False, f"{sid}: no property that is not listed"
        assert not set(body.get("required", [])) & {p[0] for p in PERSONAL[sid]}, "removable, so optional"


def test_an_argument_the_command_schema_does_not_list_is_refused():
    log, capture = lab_eventlog([COMMAND_EXECUTED])
    with pytest.raises(Exception, match=r"\$\.args"):
        log.record_event(COMMAND_EXECUTED, 1, {"command": "x:y", "status": "ok", "args": {"code": "rm -rf"}})
    assert capture.capsules == []


def test_the_default_policy_removes_paths_and_content_and_content_must_be_allowed_explicitly():
    cell = {"status": "ok", "kernel_name": "python3", "path": "thesis/ada.ipynb", "code": "secret = 1",
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "1"}], "error_name": "Oops"}
    log, capture = lab_eventlog({CELL_EXECUTED: {}, DOCUMENT: {}})
    log.record_event(CELL_EXECUTED, 1, cell)
    log.record_event(DOCUMENT, 1, {"action": "renamed", "path": "b.ipynb", "old_path": "a.ipynb"})
    kept_cell, kept_doc = capture.capsules
    assert {k for k in kept_cell if not k.startswith("__")} == {"status", "kernel_name"}
    assert {k for k in kept_doc if not k.startswith("__")} == {"action"}
    log, capture = lab_eventlog({CELL_EXECUTED: {"allowed_categories": ["content"]}})
    log.record_event(CELL_EXECUTED, 1, cell)
    (capsule,) = capture.capsules
    assert capsule["code"] == "secret = 1" and capsule["error_name"] == "Oops" and "path" not in capsule


def test_the_page_says_in_plain_words_that_code_is_content_and_removed():
    log, _ = lab_eventlog({CELL_EXECUTED: {}})
    page = describe_html(log)
    assert "what you write and compute, such as the code of a notebook cell" in page
    assert "Notebook cell run" in page


def test_the_consent_store_keeps_each_users_choice(tmp_path):
    store = ConsentStore(tmp_path / "deep" / "consent.json")
    assert store.get("ada") == (None, None)
    store.set("ada", "denied", now=1_700_000_000)
    store.set("grace", "granted", now=1_700_000_001)
    assert store.get("ada") == ("denied", 1_700_000_000)
    assert ConsentStore(tmp_path / "deep" / "consent.json").get("grace") == ("granted", 1_700_000_001)
    store.set("ada", None)
    assert store.get("ada") == (None, None) and store.get("grace")[0] == "granted"
    assert [p.name for p in (tmp_path / "deep").iterdir()] == ["consent.json"], "no temporary file left"
    (tmp_path / "deep" / "consent.json").write_text("{not json")
    with pytest.raises(OSError, match=r"consent\.json cannot be read .*fix or remove it"):
        store.get("ada")


def test_a_locked_choice_is_everyones_and_cannot_be_changed(tmp_path):
    log, _ = lab_eventlog({DOCUMENT: {"consent": "opt-in"}})
    lab = JupyterLabTelemetry(log, locked_consent="granted", consent_file=str(tmp_path / "c.json"))
    request = SimpleNamespace(headers={"Sec-GPC": "1"})
    assert lab.user_consent("ada", request) == UserConsent("granted", None, True)
    with pytest.raises(PermissionError, match="c.JupyterLabTelemetry.locked_consent"):
        lab.choose("ada", "denied")
    assert lab.consent_states(lab.user_consent("ada", request)) == {DOCUMENT: {"mode": "opt-in",
                                                                               "state": "granted"}}


def test_the_configuration_is_checked_with_messages_naming_the_option(tmp_path):
    log, _ = lab_eventlog([])
    with pytest.raises(TraitError, match="JupyterLabTelemetry.locked_consent must be 'granted', 'denied'"):
        JupyterLabTelemetry(log, locked_consent="yes")
    with pytest.raises(TraitError, match=r"JupyterLabTelemetry.browser_sinks\[0\]: here the endpoint"):
        JupyterLabTelemetry(log, browser_sinks=["collector"])
    with pytest.raises(TraitError, match=r"JupyterLabTelemetry.browser_sample_rates\['x'\] must be a number"):
        JupyterLabTelemetry(log, browser_sample_rates={"x": 2})
    lab = JupyterLabTelemetry(log, browser_sinks=["server", {"type": "http", "url": "https://intake.example.org/e"}],
                              consent_file=str(tmp_path / "c.json"))
    assert lab.browser_sinks == [{"type": "collector"},
                                 {"type": "http", "url": "https://intake.example.org/e", "format": "json"}]
    default = JupyterLabTelemetry(log, consent_file=str(tmp_path / "c.json"))
    assert default.browser_sinks == [{"type": "collector"}]


def test_an_editable_install_adds_the_package_copy_to_jupyterlab_and_a_wheel_install_nothing(tmp_path,
                                                                                           monkeypatch):
    from jupyterlab.labapp import LabApp

    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "nothing-installed"))
    app = LabApp()
    serverapp = SimpleNamespace(extension_manager=SimpleNamespace(extension_apps={"jupyterlab": {app}}))
    assert add_labextension(serverapp) == str(LABEXTENSIONS_DIR)
    assert app.extra_labextensions_path[-1] == str(LABEXTENSIONS_DIR)
    add_labextension(serverapp)
    assert app.extra_labextensions_path.count(str(LABEXTENSIONS_DIR)) == 1
    installed = tmp_path / "share" / "labextensions" / LAB_PACKAGE
    installed.mkdir(parents=True)
    (installed / "package.json").write_text(json.dumps({"name": LAB_PACKAGE}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
    other = LabApp()
    serverapp.extension_manager.extension_apps["jupyterlab"] = {other}
    assert add_labextension(serverapp) is None and other.extra_labextensions_path == []


def test_a_collector_with_the_exported_schemas_records_what_a_jupyter_server_forwards(tmp_path):
    """A Jupyter Server's HTTP sink forwards redacted capsules; the collector validates them again."""
    from telemetry_sinks.dedup import RecentIds
    from telemetry_sinks.jupyter import export_jupyter_schemas
    from telemetry_sinks.server.handlers import process_events

    server_log, forwarded = lab_eventlog({DOCUMENT: {}})
    server_log.record_event(DOCUMENT, 1, {"action": "opened", "path": "ada.ipynb", "file_type": "notebook"})
    capture = Capture()
    collector_log = EventLog(schema_paths=[export_jupyter_schemas(tmp_path / "schemas")],
                             load_schema_entry_points=False, allowed_schemas=[DOCUMENT], handlers=[capture])
    intake = SimpleNamespace(eventlog=collector_log, recent_ids=RecentIds(10), counters=__import__(
        "collections").Counter())
    result = process_events(intake, [{**forwarded.capsules[0], "__event_id__": "e-1"}])
    assert result["accepted"] == 1, result
    assert capture.capsules[0]["action"] == "opened" and "path" not in capture.capsules[0]
