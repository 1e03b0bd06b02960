"""The sink registry: listing, lookup by name, and errors that say what to do."""

from __future__ import annotations

import logging

import pytest

from telemetry_sinks import (
    MissingExtraError,
    RotatingFileSink,
    SinkConfigError,
    StreamSink,
    UnknownSinkError,
    available_sinks,
    get_sink,
    load_sinks,
    registry,
)


def test_builtin_sinks_are_listed_and_importable():
    rows = {info.name: info for info in available_sinks()}
    for name in ("file", "rotating_file", "timed_rotating_file", "stream"):
        assert rows[name].importable, rows[name].error
        assert rows[name].extra is None
    assert rows["rotating_file"].class_path == "telemetry_sinks.sinks.file:RotatingFileSink"


def test_builtin_sinks_are_registered_as_entry_points():
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group=registry.ENTRY_POINT_GROUP)}
    assert {"file", "rotating_file", "timed_rotating_file", "stream"} <= names


def test_get_sink_returns_a_configured_handler(tmp_path):
    sink = get_sink("rotating_file", filename=str(tmp_path / "e.jsonl"), max_bytes=1000)
    assert isinstance(sink, RotatingFileSink) and isinstance(sink, logging.Handler)
    assert sink.max_bytes == 1000
    sink.close()


def test_get_sink_accepts_a_class_path():
    sink = get_sink("telemetry_sinks.sinks.stream:StreamSink", stream="stdout")
    assert isinstance(sink, StreamSink)


def test_unknown_name_lists_known_sinks_and_suggests_the_closest():
    with pytest.raises(UnknownSinkError) as info:
        get_sink("rotating_fil")
    message = str(info.value)
    assert "Did you mean 'rotating_file'?" in message
    known = message.split("Known sinks: ", 1)[1].split(".", 1)[0].split(", ")
    assert {"file", "rotating_file", "timed_rotating_file", "stream", "kafka", "http"} <= set(known)
    assert known == sorted(known)


def test_missing_extra_gives_the_pip_command(monkeypatch):
    # A sink whose client library is not installed: its module fails to import.
    monkeypatch.setitem(
        registry.known_sinks, "pretend", ("telemetry_sinks_absent_client.sink:Pretend", "pretend")
    )
    with pytest.raises(MissingExtraError) as info:
        get_sink("pretend")
    assert 'pip install "telemetry-sinks[pretend]"' in str(info.value)
    row = {i.name: i for i in available_sinks()}["pretend"]
    assert not row.importable
    assert row.install_command == 'pip install "telemetry-sinks[pretend]"'


def test_bad_options_fail_at_construction_naming_the_sink_and_option(tmp_path):
    with pytest.raises(SinkConfigError, match="RotatingFileSink has no option 'maxbytes'.*'max_bytes'"):
        get_sink("rotating_file", filename=str(tmp_path / "x"), maxbytes=10)
    with pytest.raises(SinkConfigError, match="RotatingFileSink option 'max_bytes'"):
        get_sink("rotating_file", filename=str(tmp_path / "x"), max_bytes="ten")
    with pytest.raises(SinkConfigError, match="RotatingFileSink needs option 'filename'"):
        get_sink("rotating_file")


#: The least each network sink needs to be built (nothing is contacted at construction).
_NETWORK_REQUIRED = {
    "http": {"url": "http://127.0.0.1:9/api/events"},
    "kafka": {"bootstrap_servers": "127.0.0.1:9", "topic": "events"},
    "cloudwatch": {"log_group_name": "events", "region_name": "us-east-1"},
    "stackdriver": {"project": "my-project"},
    "elasticsearch": {"hosts": ["http://127.0.0.1:9"]},
    "opensearch": {"hosts": ["http://127.0.0.1:9"]},
}


@pytest.mark.parametrize(
    "name, option",
    [
        ("http", "connect_timeout"),
        ("http", "read_timeout"),
        ("kafka", "ack_timeout"),
        ("cloudwatch", "request_timeout"),
        ("stackdriver", "request_timeout"),
        ("elasticsearch", "request_timeout"),
        ("opensearch", "request_timeout"),
    ],
)
def test_a_zero_timeout_fails_at_construction_naming_the_sink_and_option(name, option):
    """A timeout of 0 would make every request fail at once: refused with the sink and option."""
    with pytest.raises(SinkConfigError) as info:
        get_sink(name, **_NETWORK_REQUIRED[name], **{option: 0})
    assert f"option '{option}'" in str(info.value)
    assert "must be more than 0, not 0" in str(info.value)
    sink = get_sink(name, **_NETWORK_REQUIRED[name], **{option: 2.5})
    try:
        assert getattr(sink, option) == 2.5
    finally:
        sink.close()


def test_load_sinks_configures_from_traitlets_config(tmp_path):
    from traitlets.config import Config

    c = Config()
    c.RotatingFileSink.filename = str(tmp_path / "events.jsonl")
    c.RotatingFileSink.backup_count = 2
    c.StreamSink.stream = "stdout"
    rotating, stream = load_sinks(["rotating_file", "stream"], config=c)
    assert rotating.filename == str(tmp_path / "events.jsonl")
    assert rotating.backup_count == 2
    assert stream.stream == "stdout"
    rotating.close()


def test_bad_option_type_in_config_names_the_option(tmp_path):
    from traitlets.config import Config

    c = Config()
    c.RotatingFileSink.filename = str(tmp_path / "events.jsonl")
    c.RotatingFileSink.max_bytes = "lots"
    with pytest.raises(SinkConfigError, match="'max_bytes'"):
        load_sinks(["rotating_file"], config=c)


def test_repr_never_shows_secrets_or_url_passwords():
    sink = get_sink("http", url="https://bob:pa55word@collector.example.org/api", token="tok-123456")
    text = repr(sink)
    assert "pa55word" not in text and "tok-123456" not in text
    assert "collector.example.org" in text
    sink.close()


# --------------------------------------------------------------------------- one table of sinks


def _pyproject_entry_points() -> dict[str, tuple[str, str | None]]:
    import re
    from pathlib import Path

    import tomllib

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    with pyproject.open("rb") as file:
        table = tomllib.load(file)["project"]["entry-points"][registry.ENTRY_POINT_GROUP]
    found = {}
    for name, value in table.items():
        match = re.fullmatch(r"\s*([\w.:]+)\s*(?:\[\s*(\w+)\s*\])?\s*", value)
        assert match, f"entry point {name} = {value!r} is not 'module:Class [extra]'"
        found[name] = (match.group(1), match.group(2))
    return found


def test_the_entry_points_in_pyproject_are_the_registry_table():
    """pyproject.toml declares exactly the sinks of ``registry.known_sinks``, with their extras."""
    assert _pyproject_entry_points() == registry.known_sinks


def test_every_sink_of_the_table_is_a_name_of_the_package():
    import telemetry_sinks

    for name, (path, _extra) in registry.known_sinks.items():
        class_name = path.rpartition(":")[2]
        assert class_name in telemetry_sinks.__all__
        assert getattr(telemetry_sinks, class_name) is registry.sink_class(name)
    with pytest.raises(AttributeError, match="no attribute 'NoSuchSink'"):
        telemetry_sinks.NoSuchSink  # noqa: B018 - the attribute access is the test


def test_every_sink_of_the_table_declares_where_it_writes():
    """``describe`` shows each sink's destination from the options the sink tags ``destination``."""
    from telemetry_sinks.describe.destinations import destination_options

    for name in registry.known_sinks:
        cls = registry.sink_class(name)
        options = destination_options(cls)
        assert options, f"sink {name!r} tags no option destination=(label, kind)"
        for option, _label, kind in options:
            trait = cls.class_traits()[option]
            assert trait.metadata.get("config") and not trait.metadata.get("secret")
            assert kind in ("path", "url", "hosts", "text")
