"""Many threads and forked processes emitting through one EventLog into a network sink and a file.

The network sink's backend is the real collector (a subprocess).  Proves: with 16
threads, every event is in the file exactly once and reaches the collector;
after ``os.fork()`` (gunicorn-style pre-fork, and a ``multiprocessing`` pool with
the fork start method), the events of every process arrive, each process has its
own event-id producer, and nothing deadlocks (every wait has a timeout).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections import Counter

import pytest
from helpers.harness import FAST, SCHEMA, SID, check_at_least_once
from helpers.servers import wait_delivered

from telemetry_sinks import EventLog, FileSink

pytestmark = [pytest.mark.integration]


@pytest.mark.timeout(120)
def test_sixteen_threads_every_event_once_in_the_file_and_all_at_the_collector(backend_factory, tmp_path):
    backend = backend_factory("http")
    network = backend.make_sink(spool_dir=str(tmp_path / "spool"), max_queue_events=2000)
    file_path = tmp_path / "events.jsonl"
    file_sink = FileSink(filename=str(file_path))
    log = EventLog(handlers=[network, file_sink], allowed_schemas=[SID])
    log.register_schema(SCHEMA)
    threads, per_thread = 16, 500
    start = threading.Barrier(threads)
    sent: list[list[dict]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def emit(index: int) -> None:
        try:
            start.wait(10)
            for n in range(per_thread):
                sent[index].append(log.emit(schema_id=SID, data={"seq": index * per_thread + n,
                                                                   "producer": f"thread-{index}"}))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=emit, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert not worker.is_alive(), "an emitting thread hangs"
    assert not errors, errors
    stats = wait_delivered(network, timeout=60)
    network.close()
    file_sink.close()

    everything = [capsule for chunk in sent for capsule in chunk]
    lines = [json.loads(line) for line in file_path.read_text().splitlines()]
    assert len(lines) == threads * per_thread
    by_seq = {line["seq"]: line for line in lines}
    assert len(by_seq) == len(lines), "an event is in the file twice"
    assert all(by_seq[c["seq"]] == c for c in everything)
    # Per thread, the file keeps the order in which that thread emitted.
    for index in range(threads):
        mine = [line["seq"] for line in lines if line["producer"] == f"thread-{index}"]
        assert mine == sorted(mine)
    assert stats["emitted"] == threads * per_thread and stats["dropped"] == 0, stats
    received = backend.wait_received(len(everything))
    assert check_at_least_once(received, everything) <= stats["retried"] + stats["replayed"]


FORKING_APP = textwrap.dedent(
    """
    import json, multiprocessing, os, sys, time
    from telemetry_sinks import EventLog, FileSink, HTTPSink
    from telemetry_sinks.delivery.envelope import producer_id

    schema, options, file_path, mode, out_dir = json.loads(sys.argv[1])
    sink = HTTPSink(**options)
    file_sink = FileSink(filename=file_path)
    log = EventLog(handlers=[sink, file_sink], allowed_schemas=[schema["$id"]],
                   load_schema_entry_points=False)
    log.register_schema(schema)

    def emit(tag, count):
        for n in range(count):
            log.emit(schema_id=schema["$id"], data={"seq": n, "producer": tag})

    def child_task(index):
        emit(f"child-{index}", 200)
        assert sink.flush(timeout=30)
        sink.close()
        file_sink.close()
        return producer_id()

    emit("parent", 300)  # the parent's worker is busy sending while it forks
    producers = {"parent": producer_id()}
    if mode == "prefork":
        children = []
        for index in range(4):
            pid = os.fork()
            if pid == 0:  # a worker: emit and exit normally (atexit closes the sink)
                emit(f"child-{index}", 200)
                with open(os.path.join(out_dir, f"child-{index}"), "w") as out:
                    out.write(producer_id())
                sys.exit(0)
            children.append(pid)
        deadline = time.monotonic() + 60
        for pid in children:
            while os.waitpid(pid, os.WNOHANG) == (0, 0):
                if time.monotonic() > deadline:
                    raise SystemExit("a forked child hangs")
                time.sleep(0.01)
    else:
        context = multiprocessing.get_context("fork")
        with context.Pool(4, maxtasksperchild=1) as pool:
            result = pool.map_async(child_task, range(4), chunksize=1)
            for index, producer in enumerate(result.get(timeout=60)):
                producers[f"child-{index}"] = producer
    emit("parent-after", 300)
    assert sink.flush(timeout=30)
    print(json.dumps(producers), flush=True)
    """
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["prefork", "pool"])
def test_forked_processes_deliver_everything_with_their_own_producer_ids(mode, backend_factory, tmp_path):
    backend = backend_factory("http")
    options = {**FAST, **backend.sink_options(), "spool_dir": str(tmp_path / "spool")}
    file_path = tmp_path / "events.jsonl"
    out_dir = tmp_path / "producers"
    out_dir.mkdir()
    config = [SCHEMA, options, str(file_path), mode, str(out_dir)]
    argv = [sys.executable, "-c", FORKING_APP, json.dumps(config)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    producers: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    producers.update({path.name: path.read_text() for path in out_dir.iterdir()})
    tags = ["parent", "parent-after", *(f"child-{i}" for i in range(4))]
    expected = {"parent": 300, "parent-after": 300, **{f"child-{i}": 200 for i in range(4)}}
    assert set(producers) == set(tags) - {"parent-after"}
    assert len(set(producers.values())) == 5, f"event-id producers shared between processes: {producers}"

    lines = [json.loads(line) for line in file_path.read_text().splitlines()]
    assert Counter(line["producer"] for line in lines) == expected  # the file: each event once
    received = backend.wait_received(sum(expected.values()))
    first: dict[str, dict] = {}
    for event_id, payload in received:
        assert first.setdefault(event_id, payload) == payload
    arrived = Counter(p["producer"] for p in first.values())
    assert arrived == expected, arrived
    # Each process's events carry that process's producer id.
    for event_id, payload in first.items():
        tag = "parent" if payload["producer"] == "parent-after" else payload["producer"]
        assert event_id.rsplit("-", 1)[0] == producers[tag], (event_id, payload)
    assert len({(p["producer"], p["seq"]) for p in first.values()}) == len(first)
