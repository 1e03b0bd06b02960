"""The record / instrument decorators: calls recorded as events, the calls themselves unchanged."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import traceback
from pathlib import Path

import pytest

from telemetry_sinks import EventLog, EventRouter, Instrumented, StreamSink, instrument, record
from telemetry_sinks.instrumentation import RecordConfigError, RecordFailures, failures

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "telemetry_sinks" / "examples" / "instrumentation" / "file-action.yaml"
SID = "https://events.telemetry-sinks.org/example/file-action"
PII = "user-identifiable-information"
CONTENTS_SERVICE = "jupyter_server/head-9a4d6ee/jupyter_server/event_schemas/contents_service/v1.yaml"
CONTENTS_ID = "https://events.jupyter.org/jupyter_server/contents_service/v1"


class Log:
    """A real EventLog writing to memory, with the example schema registered."""

    def __init__(self, allowed=None, schema=EXAMPLE):
        self.out = io.StringIO()
        self.eventlog = EventLog(
            handlers=[StreamSink(stream=self.out)],
            allowed_schemas=[(SID, [PII], [])] if allowed is None else allowed,
            load_schema_entry_points=False,
        )
        self.eventlog.register_schema_file(schema)

    def events(self) -> list[dict]:
        lines = self.out.getvalue().splitlines()
        return [{k: v for k, v in json.loads(line).items() if not k.startswith("__")} for line in lines]


@pytest.fixture(autouse=True)
def fresh_failures():
    failures.reset()
    yield
    failures.reset()


@pytest.fixture
def log() -> Log:
    return Log()


def contents_class(eventlog):
    @instrument
    class Contents:
        eventschema = SID
        eventkeys = ["path"]

        def __init__(self):
            self.eventlog = eventlog
            self.files: dict[str, str] = {}

        @record
        def save(self, model, path):
            self.files[path] = model["content"]
            return model

        @record(keys={"path": "new_path", "source_path": "old_path"})
        def rename(self, old_path, new_path):
            self.files[new_path] = self.files.pop(old_path)

        @record
        def delete(self, path):
            del self.files[path]

    return Contents


# --------------------------------------------------------------------------- what a call records


def test_a_method_call_is_one_event_with_the_named_arguments_only(log):
    contents = contents_class(log.eventlog)()
    model = {"content": "secret notebook text", "type": "file"}
    assert contents.save(model, "notes/a.md") is model
    contents.rename("notes/a.md", "notes/b.md")
    [save, rename] = log.events()
    assert save.pop("duration_ms") >= 0 and rename.pop("duration_ms") >= 0
    assert save == {"action": "save", "path": "notes/a.md", "status": "success"}
    assert rename == {"action": "rename", "path": "notes/b.md", "source_path": "notes/a.md",
                      "status": "success"}  # fmt: skip
    assert "secret notebook text" not in log.out.getvalue()  # `model` is not named: never recorded


def test_keyword_defaults_and_none(log):
    @record(SID, keys=["path", "source_path"], eventlog=log.eventlog, action="copy")
    def copy(path, *, source_path=None, overwrite=False):
        return overwrite

    assert copy("a.txt") is False
    assert copy(path="b.txt", source_path="a.txt", overwrite=True) is True
    first, second = log.events()
    assert "source_path" not in first  # None, given or by default: left out
    assert (second["action"], second["path"], second["source_path"]) == ("copy", "b.txt", "a.txt")


def test_a_recorded_function_keeps_its_name_signature_and_docs(log):
    def get(path: str, content: bool = True) -> str:
        """Get a file."""
        return path

    import inspect

    recorded = record(SID, keys=["path"], eventlog=log.eventlog)(get)
    assert recorded.__name__ == "get" and recorded.__doc__ == "Get a file."
    assert recorded.__wrapped__ is get
    assert inspect.signature(recorded) == inspect.signature(get)


def test_sync_and_async_functions_and_methods(log):
    @record(SID, keys=["path"], eventlog=log.eventlog)
    async def fetch(path):
        await asyncio.sleep(0.01)
        return path.upper()

    class Service:
        eventlog = log.eventlog
        eventschema = SID
        eventkeys = ["path"]

        @record
        async def open(self, path):
            await asyncio.sleep(0)
            return len(path)

        @record
        def close(self, path):
            return None

    import inspect

    assert inspect.iscoroutinefunction(fetch) and inspect.iscoroutinefunction(Service.open)
    assert asyncio.run(fetch("x")) == "X"
    assert asyncio.run(Service().open("abc")) == 3
    assert Service().close("abc") is None
    events = log.events()
    assert [(e["action"], e["path"]) for e in events] == [("fetch", "x"), ("open", "abc"), ("close", "abc")]
    assert events[0]["duration_ms"] >= 10  # until the coroutine returned, not until it was created


def test_async_calls_in_parallel_each_record_their_own_event(log):
    class Service:
        eventlog = log.eventlog
        eventschema = SID
        eventkeys = ["path"]

        @record
        async def save(self, path):
            await asyncio.sleep(0.01)

    async def main():
        service = Service()
        await asyncio.gather(*(service.save(f"f{i}") for i in range(20)))

    asyncio.run(main())
    assert sorted(e["path"] for e in log.events()) == sorted(f"f{i}" for i in range(20))


def test_calls_from_many_threads_each_record_their_own_event(log):
    import threading

    contents = contents_class(log.eventlog)()

    def work(n):
        for i in range(200):
            contents.save({"content": ""}, f"t{n}/{i}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    paths = [e["path"] for e in log.events()]
    assert sorted(paths) == sorted(f"t{n}/{i}" for n in range(8) for i in range(200))


def test_static_and_class_methods(log):
    class Tools:
        eventlog = log.eventlog
        eventschema = SID

        @record(keys=["path"])
        @classmethod
        def touch(cls, path):
            return cls

        @staticmethod
        @record(SID, keys=["path"], eventlog=log.eventlog)
        def stat(path):
            return path

    class MoreTools(Tools):
        pass

    assert Tools.touch("a") is Tools and MoreTools.touch("b") is MoreTools
    assert Tools.stat("c") == "c"
    assert [(e["action"], e["path"]) for e in log.events()] == [("touch", "a"), ("touch", "b"), ("stat", "c")]


def test_eventlog_can_be_a_function_and_an_event_router(log):
    other = Log()
    holder = {"log": None}

    @record(SID, keys=["path"], eventlog=lambda: holder["log"])
    def save(path):
        return path

    save("before")  # no EventLog yet: nothing recorded, nothing counted
    holder["log"] = EventRouter([log.eventlog, other.eventlog])
    save("after")
    assert [e["path"] for e in log.events()] == ["after"]
    assert [e["path"] for e in other.events()] == ["after"]
    assert failures.total == 0


# --------------------------------------------------------------------------- failures of the call


def test_exceptions_pass_through_untouched_with_a_failure_event(log):
    contents = contents_class(log.eventlog)()
    with pytest.raises(KeyError) as info:
        contents.delete("missing.txt")
    assert info.value.args == ("missing.txt",)
    # The traceback still ends where the error was raised, inside the method.
    assert traceback.extract_tb(info.tb)[-1].name == "delete"
    [event] = log.events()
    assert event["status"] == "failure" and event["exception"] == "KeyError"
    assert event["action"] == "delete" and event["path"] == "missing.txt"


def test_the_exception_class_is_recorded_never_its_message(log):
    class QuotaError(Exception):
        pass

    @record(SID, keys=["path"], eventlog=log.eventlog)
    def upload(path):
        raise QuotaError("alice@example.org is over quota")

    with pytest.raises(QuotaError):
        upload("big.bin")
    [event] = log.events()
    assert event["exception"] == f"{__name__}.{QuotaError.__qualname__}"
    assert "alice" not in log.out.getvalue()


def test_a_schema_without_status_records_successes_only(fixtures_dir):
    """Jupyter Server's contents schema ("Events are only recorded when an action succeeds")."""
    log = Log(allowed=[CONTENTS_ID], schema=fixtures_dir / CONTENTS_SERVICE)

    class Contents:
        eventlog = log.eventlog
        eventschema = CONTENTS_ID
        eventkeys = {"path": "path"}

        @record
        def save(self, model, path):
            return model

        @record(keys={"path": "new_path", "source_path": "old_path"})
        def rename(self, old_path, new_path):
            raise FileExistsError(new_path)

    contents = Contents()
    contents.save({}, "a.ipynb")
    with pytest.raises(FileExistsError):
        contents.rename("a.ipynb", "b.ipynb")
    # action and path only: the real schema declares no status or duration.
    assert log.events() == [{"action": "save", "path": "a.ipynb"}]


def test_keyboard_interrupt_and_cancellation_record_nothing(log):
    @record(SID, keys=["path"], eventlog=log.eventlog)
    def stop(path):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stop("x")
    assert log.events() == []


# --------------------------------------------------------------------------- recording never breaks the call


def test_an_invalid_event_does_not_break_the_method_and_is_reported_without_values(log, caplog):
    contents = contents_class(log.eventlog)()
    caplog.set_level(logging.WARNING, logger="telemetry_sinks.instrumentation")
    model = {"content": "x"}
    assert contents.save(model, 12345) is model  # path must be a string
    assert contents.save(model, 67890) is model
    assert log.events() == []
    assert failures.total == 2
    [(key, count)] = failures.counts().items()
    assert key[0] == SID and key[1] == "$.path" and count == 2
    [message] = [r.getMessage() for r in caplog.records]  # once per interval, not once per call
    assert SID in message and "$.path" in message and "Contents.save" in message
    assert "12345" not in message and "67890" not in message


def test_an_uncategorised_value_is_not_logged_either(log, caplog):
    caplog.set_level(logging.WARNING, logger="telemetry_sinks.instrumentation")

    @record(SID, keys={"action": "kind", "path": "path"}, eventlog=log.eventlog)
    def act(kind, path):
        return kind

    assert act("alice-private-word", ["not", "a", "string"]) == "alice-private-word"
    assert failures.total == 1
    text = caplog.text
    assert "alice-private-word" not in text and "'not'" not in text and '"not"' not in text


def test_failures_are_logged_again_after_the_interval_with_the_count():
    now = [1000.0]
    counter = RecordFailures(interval=60, clock=lambda: now[0])
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("telemetry_sinks.instrumentation")
    logger.addHandler(handler)
    try:
        for _ in range(5):
            counter.note("f()", SID, "$.path", "bad")
        now[0] += 61
        counter.note("f()", SID, "$.path", "bad")
        counter.note("f()", SID, "$.other", "bad")  # another cause: reported at once
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 3
    assert "5 calls since the last report" in seen[1]
    assert counter.total == 7


def test_a_schema_not_allowed_records_nothing_and_counts_nothing(log):
    log.eventlog.allowed_schemas = ["https://events.example.org/something-else"]
    contents = contents_class(log.eventlog)()
    contents.save({"content": ""}, "a.txt")
    assert log.out.getvalue() == ""
    assert failures.total == 0


def test_a_schema_not_registered_is_counted_and_the_call_goes_on(log):
    @record("https://events.example.org/not-registered", keys=["path"], eventlog=log.eventlog)
    def save(path):
        return "saved"

    assert save("a") == "saved"
    assert failures.counts() == {
        ("https://events.example.org/not-registered", "$", "the schema is not registered in the EventLog"): 1
    }


def test_eventlog_none_records_nothing_and_a_missing_eventlog_is_counted(log):
    class Off:
        eventlog = None
        eventschema = SID

        @record
        def save(self, path):
            return 1

    class Forgot:
        eventschema = SID

        @record
        def save(self, path):
            return 2

    assert Off().save("a") == 1 and Forgot().save("a") == 2
    assert log.events() == []
    [(schema, path, reason)] = failures.counts()
    assert "Forgot has no eventlog" in reason


def test_a_failing_sink_does_not_reach_the_method(log):
    class Broken(logging.Handler):
        def handle(self, record):
            raise OSError("disk full")

    log.eventlog.handlers = [Broken(), *log.eventlog.handlers]
    contents = contents_class(log.eventlog)()
    assert contents.save({"content": ""}, "a.txt") == {"content": ""}
    assert [e["path"] for e in log.events()] == ["a.txt"]  # the other sink still got it


def test_the_policy_redacts_recorded_arguments(log):
    log.eventlog.allowed_schemas = [SID]  # unrestricted only: paths are personal data
    contents = contents_class(log.eventlog)()
    contents.save({"content": ""}, "home/alice/diary.md")
    [event] = log.events()
    assert "path" not in event and event["action"] == "save"
    assert "alice" not in log.out.getvalue()


def test_policy_changes_and_new_schema_versions_take_effect_at_the_next_call(log):
    @record(SID, keys=["path"], eventlog=log.eventlog)
    def save(path):
        return path

    save("a")
    properties = {"action": {"type": "string"}, "path": {"type": "string"}}
    log.eventlog.register_schema({"$id": SID, "version": 2, "type": "object", "properties": properties})
    save("b")
    log.eventlog.allowed_schemas = []
    save("c")
    capsules = [json.loads(line) for line in log.out.getvalue().splitlines()]
    assert [(c["__schema_version__"], c["path"]) for c in capsules] == [(1, "a"), (2, "b")]
    assert "status" in capsules[0] and "status" not in capsules[1]  # version 2 declares no status


def test_eventversion_pins_the_schema_version(log):
    properties = {"action": {"type": "string"}, "path": {"type": "string"}}
    log.eventlog.register_schema({"$id": SID, "version": 2, "type": "object", "properties": properties})

    class Pinned:
        eventlog = log.eventlog
        eventschema = SID
        eventversion = 1
        eventkeys = ["path"]

        @record
        def save(self, path):
            return path

    class Newest(Pinned):
        eventversion = None

    Pinned().save("a")
    Newest().save("b")
    capsules = [json.loads(line) for line in log.out.getvalue().splitlines()]
    assert [(c["__schema_version__"], c["path"]) for c in capsules] == [(1, "a"), (2, "b")]


# --------------------------------------------------------------------------- classes


def test_instrument_records_the_methods_a_class_names(log):
    class Store:  # a class we do not own
        def put(self, path, data):
            return len(data)

        def get(self, path):
            return "data"

    @instrument("put")
    class RecordedStore(Store):
        eventlog = log.eventlog
        eventschema = SID
        eventkeys = ["path"]

    assert RecordedStore().put("a", b"123") == 3
    assert RecordedStore().get("a") == "data"  # not named: not recorded
    assert Store().put("b", b"") == 0  # the base class is left alone
    assert [(e["action"], e["path"]) for e in log.events()] == [("put", "a")]


def test_instrument_reads_eventmethods_with_and_without_parentheses(log):
    for decorate in (instrument, instrument()):

        @decorate
        class Files:
            eventlog = log.eventlog
            eventschema = SID
            eventkeys = ["path"]
            eventmethods = ["save"]

            def save(self, path):
                return path

        assert Files().save("a") == "a"
    assert [e["path"] for e in log.events()] == ["a", "a"]


def test_eventmethods_and_the_mixin_cover_subclasses_and_super_calls(log):
    class Base(Instrumented):
        eventmethods = ["save"]
        eventkeys = ["path"]

        def save(self, path):
            return "base"

    class Files(Base):
        eventlog = log.eventlog
        eventschema = SID

        def save(self, path):  # an override: recorded too, once per call with super()
            return "files+" + super().save(path)

    class Notebooks(Files):
        eventkeys = ["path", "source_path"]

        def save(self, path, source_path=None):
            return super().save(path)

    assert Base.save.__wrapped__  # the base is recorded too (it has no eventschema yet: checked later)
    assert Files().save("a.txt") == "files+base"
    assert Notebooks().save("b.ipynb", "a.ipynb") == "files+base"
    assert [(e["action"], e["path"], e.get("source_path")) for e in log.events()] == [
        ("save", "a.txt", None),
        ("save", "b.ipynb", "a.ipynb"),  # three recorded versions of save, one event per call
    ]


def test_recorded_methods_are_inherited_with_the_subclass_settings(log):
    @instrument
    class Files:
        eventlog = log.eventlog
        eventschema = SID
        eventkeys = ["path"]

        @record
        def save(self, path, source=None):
            return path

    class Copies(Files):
        eventkeys = ["path", "source"]

    Files().save("a", "z")
    Copies().save("b", "y")
    events = log.events()
    assert "source" not in events[0]
    assert events[1]["source"] == "y"


def test_recorded_calls_inside_other_recorded_calls_are_their_own_events(log):
    class Files:
        eventlog = log.eventlog
        eventschema = SID
        eventkeys = ["path"]

        @record
        def save(self, path):
            self.check(path)

        @record
        def check(self, path):
            return True

    Files().save("a")
    assert [e["action"] for e in log.events()] == ["check", "save"]


# --------------------------------------------------------------------------- mistakes found at decoration


def test_mistakes_are_found_when_decorating(log):
    with pytest.raises(RecordConfigError, match="needs the schema"):
        record(lambda path: None)
    with pytest.raises(RecordConfigError, match="needs eventlog="):
        record(SID)(lambda path: None)
    with pytest.raises(RecordConfigError, match=r"no argument 'paht' to record \(its arguments: path\)"):

        @record(SID, keys=["paht"], eventlog=log.eventlog)
        def save(path):
            pass

    with pytest.raises(RecordConfigError, match="generator"):

        @record(SID, eventlog=log.eventlog)
        def lines(path):
            yield path

    with pytest.raises(RecordConfigError, match="has no event schema: set eventschema on .*NoSchema"):

        @instrument
        class NoSchema:
            eventlog = log.eventlog

            @record
            def save(self, path):
                pass

    with pytest.raises(RecordConfigError, match=r"names 'paht', which no recorded method takes \(save\)"):

        @instrument
        class Typo:
            eventlog = log.eventlog
            eventschema = SID
            eventkeys = ["path", "paht"]

            @record
            def save(self, path):
                pass

    with pytest.raises(RecordConfigError, match="no method 'svae'"):
        instrument("svae")(type("Files", (), {"eventschema": SID}))
    with pytest.raises(RecordConfigError, match="collects several arguments"):
        record(SID, keys=["rest"], eventlog=log.eventlog)(lambda *rest: None)
    with pytest.raises(TypeError):
        record(SID, eventlog=log.eventlog)(42)
    assert issubclass(RecordConfigError, TypeError)


def test_the_decorators_are_exported():
    import telemetry_sinks

    assert {"record", "instrument", "Instrumented"} <= set(telemetry_sinks.__all__)


# --------------------------------------------------------------------------- EventLog.record


def test_eventlog_record_is_record_event(log):
    capsule = log.eventlog.record(SID, 1, {"action": "save", "status": "success"})
    assert capsule["__schema__"] == SID and capsule["action"] == "save"
    router = EventRouter([log.eventlog])
    [second] = router.record(SID, 1, {"action": "get", "status": "success"})
    assert second["action"] == "get"
    assert [e["action"] for e in log.events()] == ["save", "get"]


# --------------------------------------------------------------------------- the README


def readme_block(heading: str) -> str:
    """The first Python block after ``heading`` in README.md, as written."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading):]
    start = section.index("```python\n") + len("```python\n")
    return section[start:section.index("```", start)]


def test_the_readme_example_runs_as_written(tmp_path):
    import subprocess
    import sys

    code = readme_block("### Recording calls: `record` and `instrument`")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # nothing failed to record
    save, delete = (json.loads(line) for line in result.stdout.splitlines())
    assert save["__schema__"] == "https://events.example.org/contents"
    assert (save["action"], save["path"], save["status"]) == ("save", "notes/today.md", "success")
    assert (delete["action"], delete["status"]) == ("delete", "failure")
    assert delete["exception"] == "PermissionError"
    assert "my notes" not in result.stdout
    # The README shows the same lines (timestamps and durations aside).
    text = (REPO / "README.md").read_text(encoding="utf-8")
    shown = text[text.index("prints (timestamps shortened):"):].split("```")[1]
    printed = [json.loads(line) for line in shown.strip().splitlines()]

    def steady(event):
        return {k: v for k, v in event.items() if k not in ("__timestamp__", "duration_ms")}

    assert [steady(e) for e in printed] == [steady(save), steady(delete)]
