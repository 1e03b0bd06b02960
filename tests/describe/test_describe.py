"""``telemetry-sinks describe`` and the collector's ``GET /``: what is recorded, for people.

Run as a user would (``python -m telemetry_sinks describe``) and over real HTTP
against a collector on 127.0.0.1.  Uses the bundled example schemas and the real
BinderHub launch schema history from the shared fixtures.
"""

from __future__ import annotations

import html
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from helpers.cli import run
from traitlets.config import Config

from telemetry_sinks import EventLog, FileSink
from telemetry_sinks.config import EXAMPLE_SCHEMAS_DIR
from telemetry_sinks.describe import collect, describe, describe_html, describe_markdown, sinks_from_config
from telemetry_sinks.server import Collector

pytestmark = pytest.mark.timeout(60)

LAUNCH = "https://events.telemetry-sinks.org/example/app-launch"
SAVE = "https://events.telemetry-sinks.org/example/file-save"
BINDER = "binderhub.jupyter.org/launch"
#: The newest file of each version of BinderHub's launch schema (see SOURCES.md §1).
BINDER_VERSIONS = ("v1-ba15091", "v2-76d8599", "v3-3bfee95", "v4-23ae206", "v5-b3f9e7c", "v6-a0c55e8")


def binder_schemas(fixtures_dir: Path) -> list[str]:
    return [str(fixtures_dir / "binderhub" / "launch-history" / v / "launch.json") for v in BINDER_VERSIONS]


class _Text(HTMLParser):
    """The visible text of an HTML page (what a reader sees), and its tags."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.tags: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag in ("style", "script"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("style", "script"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.parts).split())


def page_text(page: str) -> _Text:
    parser = _Text()
    parser.feed(page)
    return parser


def test_describe_md_of_the_embedded_default_says_plainly_what_is_and_is_not_recorded(tmp_path):
    result = run("describe", "--format", "md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    md = result.stdout
    assert md.startswith("# What this service records")
    assert "This service records 2 kinds of events: Application launch and File saved." in md
    # Plain sentences from the schema's own descriptions, and what the policy removes.
    assert ("For Application launch, this service records: name of the application that was launched; "
            "whether the launch succeeded;") in md
    assert ("It does not record: who launched it (a user identifier); the client's IP address "
            "(identifying information).") in md
    assert "Before anything is stored, it removes your user name or account identifier" in md
    # Every property, nested ones too, with description, type, categories and whether it is stored.
    assert re.search(r"\| ↳ `client\.ip` \| The client's IP address\. \| string \| "
                     r"user-identifiable-information \| \*\*no\*\*, removed", md)
    assert ("| `status` | Whether the launch succeeded. | one of: success, failure | unrestricted | yes |"
            in md)
    # Where events go: the embedded default's rotating file, as an absolute path, for each schema too.
    target = tmp_path / "events" / "events.jsonl"
    assert f"file: `{target}`" in md
    assert md.replace("\\", "").count(f"These events go to: rotating_file (file {target}).") == 2
    # Describing builds no sink: nothing is created.
    assert not (tmp_path / "events").exists()


def test_describe_html_to_a_file_is_one_self_contained_page(tmp_path):
    out = tmp_path / "page.html"
    result = run("describe", "-o", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and "wrote" in result.stderr
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and '<html lang="en">' in page
    assert "<style>" in page
    # No scripts and nothing fetched from elsewhere: no src/href attributes, no CSS url() or @import.
    parsed = page_text(page)
    assert "script" not in parsed.tags and "link" not in parsed.tags and "img" not in parsed.tags
    assert not re.search(r"\s(src|href)=", page) and "url(" not in page and "@import" not in page
    text = parsed.text
    assert "This service records 2 kinds of events" in text
    assert "It does not record: who launched it" in text
    assert "client.ip" in text and "user-identifiable-information" in text


def _config_file(tmp_path: Path, fixtures_dir: Path, extra: str = "") -> Path:
    config = tmp_path / "config.py"
    config.write_text(
        f"c.EventLog.schema_paths = {[str(EXAMPLE_SCHEMAS_DIR), *binder_schemas(fixtures_dir)]!r}\n"
        f"c.EventLog.allowed_schemas = {{{LAUNCH!r}: {{'allowed_categories': ['user-identifier']}},\n"
        f"    {BINDER!r}: {{}}, 'https://events.example.org/not-registered': {{}}}}\n"
        "c.EventLog.load_schema_entry_points = False\n" + extra
    )
    return config


def test_describe_never_shows_secrets_and_names_destinations(tmp_path, fixtures_dir):
    secrets = ["hunter2", "tok-s3cret", "key=abc", "sasl-pa55", "es-pa55", "header-s3cret", "prod-pa55"]
    config = _config_file(tmp_path, fixtures_dir, extra=(
        "c.EventLog.sinks = ['http', 'kafka', 'elasticsearch', 'archive', 'stream']\n"
        "c.HTTPSink.url = 'https://ops:hunter2@collector.example.org:8443/api/events?key=abc'\n"
        "c.HTTPSink.token = 'tok-s3cret'\n"
        "c.HTTPSink.headers = {'X-Api-Key': 'header-s3cret'}\n"
        "c.KafkaSink.bootstrap_servers = 'kafka-1:9092,kafka-2:9092'\n"
        "c.KafkaSink.topic = 'jupyter.events'\n"
        "c.KafkaSink.sasl_plain_password = 'sasl-pa55'\n"
        "c.KafkaSink.producer_config = {'sasl_plain_password': 'prod-pa55'}\n"
        "c.ElasticsearchSink.hosts = ['https://elastic:es-pa55@es.example.org:9200']\n"
        "c.ElasticsearchSink.index = 'events-{date}'\n"
        f"c.ArchiveSink.directory = {str(tmp_path / 'archive')!r}\n"
    ))
    for fmt in ("md", "html"):
        result = run("describe", "--config", config, "--format", fmt, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        out = result.stdout
        for secret in secrets:
            assert secret not in out, (fmt, secret)
        for shown in ("https://collector.example.org:8443", "kafka-1:9092, kafka-2:9092", "jupyter.events",
                      "https://es.example.org:9200", "events-{date}", str(tmp_path / "archive"),
                      "stream: `stderr`"):
            if fmt == "html":
                shown = html.escape(shown).replace("`stderr`", "<code>stderr</code>")
            assert shown in out, (fmt, shown)
    # Nothing was built: no archive directory, no connection attempted (the hosts do not exist).
    assert not (tmp_path / "archive").exists()


def test_describe_policy_versions_kept_categories_and_not_recorded(tmp_path, fixtures_dir):
    config = _config_file(tmp_path, fixtures_dir, extra=(
        "c.EventLog.sinks = ['file']\n"
        f"c.FileSink.filename = {str(tmp_path / 'out.jsonl')!r}\n"
    ))
    result = run("describe", "--config", config, "--format", "md", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    md = result.stdout
    # The operator keeps user names for app-launch: the page says so, honestly.
    assert "These categories of personal data are **kept**, because the operator allows them:" in md
    assert "kept in username (Application launch)" in md
    assert "removed from client.ip (Application launch)" in md
    # BinderHub's launch schema: every registered version, the newest shown, and what each changed.
    assert ("Schema `binderhub.jupyter.org/launch`; versions 1, 2, 3, 4, 5, 6 "
            "(properties of version 6 shown)") in md
    assert "- version 3 adds origin" in md and "- version 6 adds request\\_origin" in md
    # Registered but not recorded, and allowed but never registered.
    not_recorded = md.split("## Registered but not recorded", 1)[1]
    assert "### File saved (not recorded)" in not_recorded
    assert "It does not record File saved: this is registered" in md
    assert "`https://events.example.org/not-registered`" in not_recorded


def test_describe_escapes_hostile_schema_text(tmp_path):
    schema = {
        "$id": "https://events.example.org/hostile",
        "version": 1,
        "title": "<script>alert('title')</script> | *stars* & `ticks`",
        "description": "Line one.\n</p><img src=x onerror=alert(1)>",
        "type": "object",
        "properties": {
            "a|b": {"type": "string", "description": "pipe | in <em>name</em>",
                    "categories": ["user-identifier"]},
        },
    }
    log = EventLog(load_schema_entry_points=False, allowed_schemas=[schema["$id"]],
                   handlers=[FileSink(filename=tmp_path / "x.jsonl", delay=True)])
    log.register_schema(schema)
    page = describe_html(log)
    parsed = page_text(page)
    assert parsed.tags.count("script") == 0 and "img" not in parsed.tags and "em" not in parsed.tags
    assert "&lt;script&gt;alert(&#x27;title&#x27;)&lt;/script&gt;" in page
    assert "<script>alert('title')</script> | *stars* & `ticks`" in parsed.text  # shown, as text
    md = describe_markdown(log)
    assert "\\<script\\>" in md and "\\*stars\\*" in md and "\\`ticks\\`" in md
    row = next(line for line in md.splitlines() if line.startswith("|") and "pipe" in line)
    assert row.startswith("| `a\\|b` | pipe \\| in \\<em\\>name\\</em\\> | string |")
    # The pipes inside the text are escaped: the table row keeps its 5 columns.
    assert len(re.findall(r"(?<!\\)\|", row)) == 6
    with pytest.raises(ValueError, match="unknown format"):
        describe(log, "pdf")


def test_describe_without_sinks_or_allowed_schemas_says_nothing_is_stored(tmp_path):
    log = EventLog(load_schema_entry_points=False, schema_paths=[str(EXAMPLE_SCHEMAS_DIR)],
                   allowed_schemas=[LAUNCH])
    assert "This service stores nothing: no destination (sink) is configured" in describe_markdown(log)
    log = EventLog(load_schema_entry_points=False, schema_paths=[str(EXAMPLE_SCHEMAS_DIR)],
                   handlers=[FileSink(filename=tmp_path / "x.jsonl", delay=True)])
    md = describe_markdown(log)
    assert "This service records nothing: none of its registered kinds of events" in md
    assert not collect(log).recorded and len(collect(log).not_recorded) == 2


def test_sinks_from_config_uses_parent_sections_like_traitlets():
    c = Config()
    c.EventLog.sinks = ["rotating_file"]
    c.FileSink.filename = "/var/log/a.jsonl"  # a parent class section applies to RotatingFileSink
    assert sinks_from_config(c)[0].destinations == [("file", "/var/log/a.jsonl")]
    c.RotatingFileSink.filename = "/var/log/b.jsonl"  # the more specific section wins
    assert sinks_from_config(c)[0].destinations == [("file", "/var/log/b.jsonl")]


# --------------------------------------------------------------------------- the collector's GET /


@pytest.fixture
def collector(tmp_path, fixtures_dir):
    c = Config()
    c.EventLog.schema_paths = [str(EXAMPLE_SCHEMAS_DIR), *binder_schemas(fixtures_dir)]
    c.EventLog.load_schema_entry_points = False
    c.EventLog.allowed_schemas = {LAUNCH: {}, BINDER: {}}
    c.EventLog.sinks = ["file"]
    c.FileSink.filename = str(tmp_path / "events.jsonl")
    c.Collector.port = 0
    c.Collector.token = "collector-t0ken"
    server = Collector(config=c)
    port = server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_collector_serves_the_page_publicly_even_with_a_token(collector, tmp_path):
    answer = requests.get(f"{collector}/", timeout=10)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/html; charset=UTF-8"
    assert "default-src 'none'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    text = page_text(answer.text).text
    assert "This service records 2 kinds of events: Application launch and BinderHub Launch Events." in text
    assert "It does not record File saved" in text
    assert str(tmp_path / "events.jsonl") in text
    assert "collector-t0ken" not in answer.text
    md = requests.get(f"{collector}/?format=md", timeout=10)
    assert md.status_code == 200 and md.headers["Content-Type"].startswith("text/markdown")
    assert md.text.startswith("# What this service records")
    bad = requests.get(f"{collector}/?format=pdf", timeout=10)
    assert bad.status_code == 400 and "format" in bad.json()["error"]
    # The page is public; the data API is not.
    assert requests.get(f"{collector}/api/schemas", timeout=10).status_code == 401
    denied = requests.post(f"{collector}/api/events", data=json.dumps({}), timeout=10,
                           headers={"Content-Type": "application/json"})
    assert denied.status_code == 401
    assert requests.post(f"{collector}/", data="x", timeout=10).status_code == 405
