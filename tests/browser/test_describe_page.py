"""The collector's ``GET /`` page in a real headless browser (Debian's chromium).

The page is loaded from a running collector on 127.0.0.1, its DOM checked as the
browser built it, and a screenshot taken.  A missing chromium fails the test
(``scripts/run-tests.sh`` installs it).

``TELEMETRY_SINKS_UPDATE_SCREENSHOT=1`` also saves the screenshot as
``docs/describe.png`` (the one the README shows).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest
from traitlets.config import Config

from telemetry_sinks.config import EXAMPLE_SCHEMAS_DIR
from telemetry_sinks.server import Collector

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parents[2]
LAUNCH = "https://events.telemetry-sinks.org/example/app-launch"
BINDER = "binderhub.jupyter.org/launch"
BINDER_VERSIONS = ("v1-ba15091", "v2-76d8599", "v3-3bfee95", "v4-23ae206", "v5-b3f9e7c", "v6-a0c55e8")
HOSTILE = {
    "$id": "https://events.example.org/hostile",
    "version": 1,
    "title": "<script>document.title='pwned'</script>Hostile",
    "description": "</p><img src=x onerror=\"document.title='pwned'\"><p>",
    "type": "object",
    "properties": {"x": {"type": "string", "description": "<b>not bold</b>"}},
}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if found:
        return found
    pytest.fail(
        "chromium is not installed: run the suite with `bash scripts/run-tests.sh`, which installs it, "
        "or apt-get install -y chromium (Debian) - the page is tested in it"
    )


def browse(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=60,
    )


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []
        self.title = ""
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in.append(tag)

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if self._in and self._in[-1] == "title":
            self.title += data
        elif not self._in or self._in[-1] not in ("style", "script"):
            self.text.append(data)


def png_size_and_colours(path: Path) -> tuple[int, int, int]:
    """Width, height and the number of distinct byte values in the decoded image data."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG file"
    width, height = struct.unpack(">II", data[16:24])
    idat, offset = b"", 8
    while offset < len(data):
        length, kind = struct.unpack(">I4s", data[offset:offset + 8])
        if kind == b"IDAT":
            idat += data[offset + 8:offset + 8 + length]
        offset += 12 + length
    return width, height, len(set(zlib.decompress(idat)))


@pytest.fixture
def collector(tmp_path, fixtures_dir):
    c = Config()
    history = fixtures_dir / "binderhub" / "launch-history"
    binder = [str(history / v / "launch.json") for v in BINDER_VERSIONS]
    c.EventLog.schema_paths = [str(EXAMPLE_SCHEMAS_DIR), *binder]
    c.EventLog.load_schema_entry_points = False
    c.EventLog.allowed_schemas = {LAUNCH: {"allowed_categories": []}, BINDER: {}, HOSTILE["$id"]: {}}
    # Destinations as an operator would name them; nothing is written or sent (no event is posted).
    c.EventLog.sinks = ["rotating_file", "http"]
    c.RotatingFileSink.filename = "/var/log/telemetry/events.jsonl"
    c.RotatingFileSink.delay = True
    c.HTTPSink.url = "https://ops:hunter2@collector.example.org/api/events"
    c.HTTPSink.token = "http-t0ken"
    c.Collector.port = 0
    c.Collector.token = "browser-t0ken"  # the page stays public
    server = Collector(config=c)
    port = server.start()
    yield server, f"http://127.0.0.1:{port}/"
    server.stop()


def load(binary: str, profile: Path, url: str) -> tuple[_Dom, str, str]:
    dumped = browse(binary, profile, "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = _Dom()
    dom.feed(dumped.stdout)
    return dom, " ".join(" ".join(dom.text).split()), dumped.stdout


def test_the_describe_page_in_a_real_browser(collector, tmp_path):
    binary = chromium()
    server, url = collector
    dom, text, raw = load(binary, tmp_path / "profile", url)
    assert dom.title == "What this service records"
    assert "This service records 2 kinds of events: Application launch and BinderHub Launch Events." in text
    assert ("For Application launch, this service records: name of the application that was launched; "
            "whether the launch succeeded;") in text
    assert "It does not record: who launched it (a user identifier); the client's IP address" in text
    assert "Before anything is stored, it removes your user name or account identifier" in text
    assert "It does not record File saved: this is registered, but not on the operator's list" in text
    assert "Where the events go" in text and "/var/log/telemetry/events.jsonl" in text
    assert "URL host: https://collector.example.org" in text
    assert "versions 1, 2, 3, 4, 5, 6 (properties of version 6 shown)" in text
    assert "client.ip" in text and "user-identifiable-information" in text
    assert "browser-t0ken" not in raw and "hunter2" not in raw and "http-t0ken" not in raw

    shot = tmp_path / "describe.png"
    taken = browse(binary, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.is_file() and shot.stat().st_size > 20_000
    width, height, colours = png_size_and_colours(shot)
    assert (width, height) == (1280, 2000)
    assert colours > 50, "the screenshot is (nearly) blank"
    if os.environ.get("TELEMETRY_SINKS_UPDATE_SCREENSHOT"):
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copy(shot, REPO / "docs" / "describe.png")

    # A schema whose text is markup: shown as text, never run or rendered (the page is built per request).
    server.eventlog.register_schema(HOSTILE)
    dom, text, raw = load(binary, tmp_path / "profile", url)
    assert dom.title == "What this service records"  # no injected script ran
    assert "This service records 3 kinds of events: <script>document.title='pwned'</script>Hostile," in text
    assert "<b>not bold</b>" in text
    assert "script" not in dom.tags and "img" not in dom.tags and "b" not in dom.tags
