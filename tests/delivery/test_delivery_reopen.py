"""A network sink closed by logging (``logging.shutdown``, ``dictConfig``) works again on its next event.

``logging.config.dictConfig`` (non-incremental, as traitlets calls it when an
application configures its logging) closes every handler of the process.  These
tests call the real ``dictConfig``, never a patched one.
"""

from __future__ import annotations

import json
import logging
import logging.config
import subprocess
import sys
import textwrap
import uuid
import weakref
from pathlib import Path

import pytest
from helpers.delivery import FileBackendSink, Gate
from helpers.waiting import wait_until

HERE = Path(__file__).resolve().parent


def reconfigure_logging() -> None:
    """What traitlets' Application._configure_logging does: a fresh, non-incremental dictConfig."""
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"null": {"class": "logging.NullHandler"}},
            "loggers": {f"reconfigured-{uuid.uuid4().hex}": {"handlers": ["null"], "level": "INFO"}},
        }
    )


@pytest.fixture
def logger():
    log = logging.getLogger(f"reopen-test-{uuid.uuid4().hex}")
    log.propagate = False
    log.setLevel(logging.INFO)
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)


def test_a_sink_closed_by_dictconfig_delivers_the_next_events(make_sink, logger, caplog):
    sink = make_sink()
    logger.addHandler(sink)
    logger.info({"n": 0})
    assert sink.flush(5)
    reconfigure_logging()  # closes the sink (and every other handler)
    assert sink._engine._closed and sink.backend_closed == 1

    with caplog.at_level(logging.INFO, logger="telemetry_sinks.delivery"):
        for n in range(1, 6):
            logger.info({"n": n})
        assert sink.flush(5)
    assert sink.delivered_numbers == [0, 1, 2, 3, 4, 5]
    assert sink.opened == 2  # connected again
    stats = sink.stats()
    assert stats["emitted"] == 6 and stats["sent"] == 6 and stats["dropped"] == 0
    (reopened,) = [r for r in caplog.records if "reopened" in r.getMessage()]
    assert reopened.levelno == logging.INFO and repr(sink.label) in reopened.getMessage()
    assert "worker restarted" in reopened.getMessage()


def test_logging_shutdown_then_an_event_reopens_and_close_still_delivers(make_sink):
    sink = make_sink()
    logging.shutdown([weakref.ref(sink)])
    sink.write_payload({"n": 1})  # EventLog's fast path (handle_capsule) ends here
    sink.close()  # the usual close again: delivers what is queued
    assert sink.delivered_numbers == [1]
    assert sink.opened == 1 and sink.backend_closed == 1


def test_reopen_replays_what_close_spooled_while_the_backend_was_down(make_sink, logger, tmp_path):
    down = {"on": True}

    def behavior(batch):
        if down["on"]:
            raise ConnectionRefusedError("backend down")

    spool = tmp_path / "spool"
    sink = make_sink(behavior, spool_dir=str(spool), close_timeout=0.3)
    logger.addHandler(sink)
    for n in range(3):
        logger.info({"n": n})
    reconfigure_logging()  # close(): the backend is down, so the three events go to the spool
    assert sink.stats()["spooled"] == 3 and list(spool.glob("*.wal"))

    down["on"] = False
    logger.info({"n": 3})
    wait_until(lambda: sorted(sink.delivered_numbers) == [0, 1, 2, 3])
    wait_until(lambda: not list(spool.glob("*.wal")))
    stats = sink.stats()
    assert stats["replayed"] == 3 and stats["dropped"] == 0


def test_a_worker_stuck_at_close_is_retired_when_the_sink_reopens(make_sink, tmp_path):
    gate = Gate()
    sink = make_sink(gate, spool_dir=str(tmp_path / "spool"), close_timeout=0.2)
    sink.write_payload({"n": 0})
    assert gate.entered.wait(5)
    sink.close()  # gives up on the stuck send; the event is spooled
    old_worker = sink._engine._worker
    assert old_worker is not None and old_worker.is_alive()
    sink.write_payload({"n": 1})
    new_worker = sink._engine._worker
    assert new_worker is not None and new_worker is not old_worker
    gate.release()
    old_worker.join(5)
    assert not old_worker.is_alive()
    wait_until(lambda: {0, 1} <= set(sink.delivered_numbers))
    assert sink.flush(5)
    stats = sink.stats()
    # The stuck batch (n=0) may arrive twice (at-least-once), never be lost, and the
    # retired worker did not count anything: sent counts only what the new worker sent.
    assert stats["dropped"] == 0 and stats["sent"] == len(sink.delivered) - 1


EXIT_SCRIPT = """
import atexit, json, sys
sys.path.insert(0, {helpers!r})

def late_event():  # registered before telemetry_sinks is imported: runs after its exit hook
    sink.write_payload({{"n": "late"}})
    print(json.dumps(sink.stats()), flush=True)

atexit.register(late_event)
from helpers.delivery import FileBackendSink
sink = FileBackendSink(out_file={out!r}, flush_interval=0.0)
sink.write_payload({{"n": 1}})
"""


def test_closing_at_interpreter_exit_keeps_its_meaning(tmp_path):
    out = tmp_path / "backend.jsonl"
    script = tmp_path / "exit.py"
    script.write_text(textwrap.dedent(EXIT_SCRIPT.format(helpers=str(HERE.parent), out=str(out))))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    # The exit hook delivered the first event; the one after it is dropped, not reopened.
    assert [json.loads(data)["n"] for _, data in FileBackendSink.read(str(out))] == [1]
    assert stats["sent"] == 1 and stats["dropped"] == 1
    assert "reopened" not in proc.stderr
