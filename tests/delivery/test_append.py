"""The spool's append: the C accelerator (``_append.c``) and its Python equivalent.

Both build the same record (the format in ``spool``'s docstring) and raise the same
errors; the accelerator also keeps the GIL, except for a while after the file system
blocked.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemetry_sinks.delivery import spool as spool_module
from telemetry_sinks.delivery.envelope import Envelope, next_event_id
from telemetry_sinks.delivery.spool import (
    RELEASE_AFTER_SLOW_NS,
    SLOW_AGAIN_NS,
    SLOW_WRITE_NS,
    Spool,
    append_in_python,
    encode_record,
    parse_records,
)

accelerator = spool_module._accelerator
APPENDS = {"c": accelerator.append if accelerator else None, "python": append_in_python}


@pytest.fixture(params=sorted(APPENDS))
def append(request):
    function = APPENDS[request.param]
    assert function is not None, "the C accelerator is not built (see test_the_accelerator_is_built)"
    return function


@pytest.fixture
def guard() -> Iterator[None]:
    """The accelerator's slow-write guard with the thresholds a test sets, restored afterwards."""
    yield
    accelerator.configure(SLOW_WRITE_NS, SLOW_AGAIN_NS, RELEASE_AFTER_SLOW_NS)


def open_append(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)


def test_the_accelerator_is_built():
    """``pip install`` builds it where there is a C compiler (as on every machine the tests run on);
    without it the spool appends with os.write, which releases the GIL (slower under load)."""
    assert spool_module.ACCELERATED and accelerator is not None
    assert spool_module._append is accelerator.append


def test_the_built_accelerator_is_the_one_in_the_source_tree():
    """A build older than ``_append.c`` (edited, not reinstalled) would test old code: the README's
    test command reinstalls the package, which rebuilds it."""
    source = Path(spool_module.__file__).with_name("_append.c").read_bytes()
    assert accelerator.SOURCE_SHA256 == hashlib.sha256(source).hexdigest(), (
        "the C accelerator was built from another _append.c: run pip install -e . (or "
        "bash scripts/run-tests.sh) to rebuild it"
    )


event_ids = st.text(st.characters(codec="ascii", exclude_characters="\n"), min_size=1, max_size=40)
datas = st.text(st.characters(codec="utf-8"), max_size=3000)  # no lone surrogates: JSON lines


@settings(max_examples=200, deadline=None)
@given(records=st.lists(st.tuples(event_ids, datas), min_size=1, max_size=8))
def test_both_appends_write_the_record_encode_record_builds(tmp_path_factory, records):
    paths = {}
    for name, function in APPENDS.items():
        assert function is not None
        path = paths[name] = tmp_path_factory.mktemp(name) / "segment"
        fd = open_append(path)
        try:
            for event_id, data in records:
                size, crc = function(fd, event_id, data)
                record = encode_record(event_id, data)
                assert size == len(record)
                assert crc == zlib.crc32(record[12:])
        finally:
            os.close(fd)
    written = paths["c"].read_bytes()
    assert written == paths["python"].read_bytes() == b"".join(encode_record(*r) for r in records)
    assert parse_records(written).records == records


@given(data=st.binary(max_size=5000))
def test_the_accelerators_crc32_is_zlibs(data):
    """Below 64 bytes, and the last len % 16 bytes, by tables; the rest by carry-less
    multiplication where the CPU has it (``CLMUL``)."""
    assert accelerator.crc32(data) == zlib.crc32(data)


def _pieces() -> st.SearchStrategy[bytes]:
    """Valid records and checkpoints, and what damages them: bytes that start like an item, forged
    headers (lengths past the end, a checkpoint of another size), bodies without a newline or
    with bytes that are not ASCII / UTF-8, random bytes."""
    ids = st.text(st.characters(codec="ascii"), min_size=0, max_size=12)
    record = st.builds(encode_record, ids.filter(lambda i: i and "\n" not in i), datas)
    checkpoint = st.builds(spool_module.encode_checkpoint, st.integers(0, 2**64 - 1),
                           st.integers(0, 2**32 - 1))  # fmt: skip
    magic = st.sampled_from([spool_module.MAGIC, spool_module.CHECKPOINT_MAGIC, b"\x89TS", b"\x89TSX"])
    forged = st.builds(
        lambda m, n, body, fix: m + n.to_bytes(4, "big") + zlib.crc32(body).to_bytes(4, "big") * fix + body,
        magic, st.integers(0, 2**32 - 1) | st.integers(0, 40), st.binary(max_size=40), st.integers(0, 1),
    )
    # Bodies with a valid length and checksum: an id (maybe empty, maybe not ASCII), a newline, data
    # (maybe not UTF-8); or no newline at all.
    bodies = st.builds(lambda i, d: i + b"\n" + d, st.binary(max_size=6) | ids.map(str.encode),
                       st.binary(max_size=20) | datas.map(str.encode)) | st.binary(max_size=40)  # fmt: skip
    unchecked = st.builds(
        lambda m, body: m + len(body).to_bytes(4, "big") + zlib.crc32(body).to_bytes(4, "big") + body,
        magic, bodies,
    )  # fmt: skip
    return st.one_of(record, checkpoint, forged, unchecked, st.binary(max_size=30))


@settings(max_examples=400, deadline=None)
@given(pieces=st.lists(_pieces(), max_size=10), cut=st.integers(0, 10**6))
def test_the_accelerators_scan_reads_what_the_python_reader_reads(pieces, cut):
    """The C scan (used by ``parse_records`` when built) against the Python one, its specification:
    the same records, ends, checksums, checkpoints and skipped ranges, in any bytes."""
    buf = b"".join(pieces)
    buf = buf[: cut % (len(buf) + 1)] if cut % 3 == 0 else buf  # torn tails too
    assert spool_module._scan is accelerator.scan
    assert parse_records(buf) == spool_module._parse(buf, spool_module.scan_in_python)
    for pos in {0, cut % (len(buf) + 1)}:
        found: list[list[object]] = [[], [], [], []]
        expected: list[list[object]] = [[], [], [], []]
        assert accelerator.scan(buf, pos, *found) == spool_module.scan_in_python(buf, pos, *expected)
        assert found == expected


def test_the_accelerators_scan_refuses_wrong_arguments():
    with pytest.raises(TypeError):
        accelerator.scan(bytearray(b""), 0, [], [], [], [])
    with pytest.raises(TypeError):
        accelerator.scan(b"", 0, [], (), [], [])
    with pytest.raises(ValueError):
        accelerator.scan(b"", -1, [], [], [], [])


ledger_steps = st.lists(
    st.one_of(
        st.tuples(st.just("write"), event_ids, st.text(st.characters(codec="utf-8"), max_size=300)),
        st.tuples(st.just("append"), st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1)),
        st.tuples(st.just("pop_first")),
        st.tuples(st.just("first")),
        st.tuples(st.just("pop_run"), st.integers(0, 6), st.booleans()),
        st.tuples(st.just("clear")),
        st.tuples(st.just("put"), st.binary(max_size=40)),
    ),
    max_size=40,
)


def _ledger_step(ledger, budget, step):
    """Apply ``step`` to ``ledger``; what it returned or raised, and the state after it."""
    name, *args = step
    if name == "pop_run":  # the oldest records while they are these ends, sometimes with a wrong one
        count, wrong = args
        ends = list(ledger)[:count]
        args = [ends + [2**64 - 1] if wrong else ends]
    try:
        result = getattr(ledger, name)(*args, budget) if name == "write" else getattr(ledger, name)(*args)
    except IndexError:
        result = "IndexError"
    return result, list(ledger), len(ledger), bool(ledger), ledger.size, budget.used


@settings(max_examples=300, deadline=None)
@given(steps=ledger_steps, limit=st.integers(0, 3000), room=st.integers(0, 3000), mapped=st.booleans())
def test_the_accelerators_ledger_does_what_the_python_ledger_does(tmp_path_factory, steps, limit, room,
                                                                  mapped):  # fmt: skip
    """``Ledger`` in C against ``spool.Ledger``, its specification: the same answers, records,
    sizes and budget after any steps, and the same bytes written; the C one also with its file
    mapped (``map()``, a spool's head), whose bytes match once ``release()`` cut it to size."""
    files, ledgers = {}, {}
    for name, (ledger_type, budget_type) in {
        "c": (accelerator.Ledger, accelerator.Budget),
        "python": (spool_module.Ledger, spool_module.Budget),
    }.items():
        files[name] = tmp_path_factory.mktemp(name) / "segment"
        fd = os.open(files[name], os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        ledgers[name] = (ledger_type(fd, 0, limit), budget_type(room))
    c_ledger = ledgers["c"][0]
    if mapped:
        assert c_ledger.map() and c_ledger.mapped
    try:
        for step in steps:
            assert _ledger_step(*ledgers["c"], step) == _ledger_step(*ledgers["python"], step)
        c_ledger.release()
        assert not c_ledger.mapped
        after = ("put", b"after release")  # written by write(2) at the end of the records
        assert _ledger_step(*ledgers["c"], after) == _ledger_step(*ledgers["python"], after)
    finally:
        for ledger, _ in ledgers.values():
            os.close(ledger.fd)
    assert files["c"].read_bytes() == files["python"].read_bytes()


def test_the_accelerators_ledger_keeps_its_records_while_it_drops_the_settled_ones():
    """Past 4,096 settled records the arrays drop them; what is unsettled stays, in order."""
    ledger = accelerator.Ledger()
    for end in range(1, 20_001):
        ledger.append(end, end % 7)
    for end in range(1, 15_001):
        assert ledger.pop_first() == (end, end % 7)
    for end in range(20_001, 30_001):
        ledger.append(end, end % 7)
    assert ledger.pop_run(list(range(15_001, 15_011))) == (10, 15_010, 15_010 % 7)
    assert list(ledger) == list(range(15_011, 30_001)) and ledger.first() == 15_011
    ledger.clear()
    assert not ledger and len(ledger) == 0
    with pytest.raises(IndexError):
        ledger.first()


def test_a_write_error_is_the_oserror_os_write_raises(tmp_path, append):
    fd = os.open(tmp_path / "read-only", os.O_RDONLY | os.O_CREAT)
    try:
        with pytest.raises(OSError) as caught:
            append(fd, "id-1", "{}")
        with pytest.raises(OSError) as plain:
            os.write(fd, b"x")
    finally:
        os.close(fd)
    assert caught.value.errno == plain.value.errno == errno.EBADF
    assert caught.value.strerror == plain.value.strerror


@pytest.mark.parametrize(("event_id", "data"), [("id-é", "{}"), ("id-1", '{"s":"\udc80"}')])
def test_an_id_that_is_not_ascii_or_data_that_is_not_unicode_is_refused_before_writing(
    tmp_path, append, event_id, data
):
    path = tmp_path / "segment"
    fd = open_append(path)
    try:
        with pytest.raises(UnicodeEncodeError):
            append(fd, event_id, data)
    finally:
        os.close(fd)
    assert path.read_bytes() == b""


def run_script(script: str, *args: object) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (a template with ``{root}``: this source tree) in a new interpreter."""
    root = str(Path(spool_module.__file__).parents[2])
    return subprocess.run([sys.executable, "-c", script.format(root=root), *map(str, args)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


PARTIAL = """
import os, resource, signal, sys
sys.path[:0] = [{root!r}]
from telemetry_sinks.delivery import spool
append = spool._accelerator.append if sys.argv[1] == "c" else spool.append_in_python
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
print(append(fd, "id-1", "x" * 47)[0])  # 12 + 5 + 47 = 64 bytes
try:
    append(fd, "id-2", "y" * 47)  # the limit lets 36 bytes of it through, then EFBIG
except OSError as exc:
    print(exc.errno)
"""


@pytest.mark.parametrize("name", sorted(APPENDS))
def test_a_write_cut_short_by_the_file_size_limit_raises_after_the_bytes_that_fit(tmp_path, name):
    """The kernel writes part of a record, then refuses the rest (here RLIMIT_FSIZE, as a full disk
    does): the append writes what it can, then raises, and the spool seals that segment."""
    path = tmp_path / "segment"
    done = run_script(PARTIAL, name, path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["64", str(errno.EFBIG)]
    assert path.stat().st_size == 100
    parsed = parse_records(path.read_bytes())
    assert [event_id for event_id, _ in parsed.records] == ["id-1"]
    assert [issue.kind for issue in parsed.issues] == ["torn tail"]


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: a write to it blocks until something reads."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    try:
        while True:
            os.write(write_end, b"z" * 4096)
    except BlockingIOError:
        pass
    os.set_blocking(write_end, True)
    return read_end, write_end


def test_a_signal_during_a_blocked_write_runs_its_handler_and_the_write_completes():
    """EINTR: the handler runs (as os.write runs it, PEP 475), then the rest is written.  A pipe
    that a slow reader drains stands in for a write that blocks."""
    read_end, write_end = full_pipe()
    reader = subprocess.Popen(["sh", "-c", "sleep 0.5; cat > /dev/null"], stdin=read_end)
    os.close(read_end)
    handled = []
    previous = signal.signal(signal.SIGALRM, lambda *_: handled.append(time.monotonic()))
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        size, _ = accelerator.append(write_end, "id-1", "x" * 10_000)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(write_end)
        reader.wait(timeout=30)
    assert size == 12 + 5 + 10_000
    assert len(handled) == 1


def test_a_signal_handler_that_raises_during_a_blocked_write_propagates():
    read_end, write_end = full_pipe()

    def stop(*_):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 0.1)
    try:
        with pytest.raises(KeyboardInterrupt):
            accelerator.append(write_end, "id-1", "x" * 100)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        os.close(write_end)
        os.close(read_end)


def other_thread_runs(during) -> int:
    """How often another thread ran while ``during()`` ran, with a switch interval longer than the
    test: it runs only if something releases the GIL."""
    ran = 0
    stop = False

    def other_thread() -> None:
        nonlocal ran
        while not stop:
            ran += 1
            time.sleep(0)  # gives the GIL back at once

    interval = sys.getswitchinterval()
    sys.setswitchinterval(30.0)
    thread = threading.Thread(target=other_thread, daemon=True)
    try:
        thread.start()
        time.sleep(0.05)
        before = ran
        during()
        return ran - before
    finally:
        stop = True
        sys.setswitchinterval(interval)
        thread.join()


def test_spool_appends_do_not_hand_the_gil_to_other_threads(tmp_path):
    """``os.write`` releases the GIL, so a sink's worker waiting for it takes it on every event
    and the emitting thread waits for the worker: the durable emit ran at a third of the
    memory-only one.  The spool's appends keep the GIL."""
    spool = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=10**8)
    batch = [Envelope(next_event_id(), '{"n": 1}') for _ in range(2001)]
    spool.write(batch[0])  # the head segment is opened (os.open releases the GIL)

    def write_all() -> None:
        for env in batch[1:]:
            spool.write(env)

    try:
        during = other_thread_runs(write_all)
    finally:
        spool.close()
    assert during == 0, f"another thread ran {during} times during 2,000 spool writes"


def append_to_a_pipe_drained_late(delay: float) -> None:
    """An append that blocks for ``delay`` seconds: to a full pipe that a process drains then."""
    read_end, write_end = full_pipe()
    reader = subprocess.Popen(["sh", "-c", f"sleep {delay}; cat > /dev/null"], stdin=read_end)
    os.close(read_end)
    try:
        accelerator.append(write_end, "id-1", "x" * 10_000)
    finally:
        os.close(write_end)
        reader.wait(timeout=30)


def test_slow_writes_release_the_gil_for_a_while_then_it_is_kept_again(tmp_path, guard):
    """A file system that blocks (two writes over the slow threshold within the "again" time)
    must not stop the application's other threads: the writes of the release time release the
    GIL; then it is kept again.  Every write counts as slow here (threshold 0 ns)."""
    fd = open_append(tmp_path / "segment")
    try:
        accelerator.configure(0, 0, 10**12)  # slow writes, never two close enough
        for n in range(3):
            accelerator.append(fd, f"id-{n}", "{}")
        assert not accelerator.releasing()

        accelerator.configure(0, 10**12, 300_000_000)  # slow again soon after: the fs blocks
        accelerator.append(fd, "id-a", "{}")  # slow once: could be a preempted thread
        assert not accelerator.releasing()
        accelerator.append(fd, "id-b", "{}")
        assert accelerator.releasing()
        released = other_thread_runs(lambda: append_to_a_pipe_drained_late(0.2))
        assert released > 0

        time.sleep(0.35)  # the release time is over
        assert not accelerator.releasing()
        accelerator.configure(SLOW_WRITE_NS, SLOW_AGAIN_NS, RELEASE_AFTER_SLOW_NS)
        kept = other_thread_runs(lambda: [accelerator.append(fd, f"k-{n}", "{}") for n in range(200)])
        assert kept == 0
    finally:
        os.close(fd)
    records = parse_records((tmp_path / "segment").read_bytes()).records
    assert len(records) == 3 + 2 + 200


def test_a_spool_without_the_accelerator_writes_and_replays_the_same_events(tmp_path, monkeypatch):
    """An installation without a C compiler: the spool appends, keeps its books, checkpoints and
    reads back in Python."""
    from telemetry_sinks.fileio import write_all

    monkeypatch.setattr(spool_module, "_append", append_in_python)
    monkeypatch.setattr(spool_module, "_write", write_all)
    monkeypatch.setattr(spool_module, "_Ledger", spool_module.Ledger)
    monkeypatch.setattr(spool_module, "_Budget", spool_module.Budget)
    monkeypatch.setattr(spool_module, "_scan", spool_module.scan_in_python)
    calls: list[int] = []
    monkeypatch.setattr(spool_module.Ledger, "write", _counted(spool_module.Ledger.write, calls))
    first = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=4096)
    written = [Envelope(next_event_id(), f'{{"n":{n},"s":"é"}}') for n in range(100)]
    for env in written:
        first.write(env)
    first.ack(written[:40])
    first.close()
    second = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=4096)
    second.scan()
    replayed = []
    while batch := second.next_batch(1000, 10**8):
        replayed.extend(batch)
        second.ack(batch)
    second.close()
    assert [(e.event_id, e.data) for e in replayed] == [(e.event_id, e.data) for e in written[40:]]
    # The usual appends went through the Python ledger (a new head's first record does not).
    assert sum(1 for end in calls if end) >= 80


def _counted(function, calls):
    def counted(*args, **kwargs):
        end = function(*args, **kwargs)
        calls.append(end)
        return end

    return counted


# ---------------------------------------------------------------- the mapped head

def _mapped_records(path: Path) -> tuple[int, bytes]:
    """(length of the file, its bytes after the records): zeros while room is reserved."""
    data = path.read_bytes()
    return len(data), data[parse_records(data).length :]


def test_a_head_is_written_through_a_mapping_and_cut_to_its_records_when_sealed(tmp_path):
    """The head's records are copied into the page cache through a shared mapping of its file
    (no write(2) an event); the file grows a reserved chunk at a time, zeros until sealed or
    closed, when it is cut to its records; the sealed segment's checkpoints go after them."""
    spool = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=64 * 1024)
    written = [Envelope(next_event_id(), f'{{"n":{n},"s":"{"x" * 300}"}}') for n in range(300)]
    for env in written[:100]:
        spool.write(env)
    head = spool._head
    assert head is not None and head.ledger.mapped
    length, reserved = _mapped_records(Path(head.path))
    assert length > head.size and reserved == bytes(len(reserved))
    for env in written[100:]:  # about 100 KiB: the first head is sealed, a second one started
        spool.write(env)
    first = next(s for s in spool._sealed)
    assert not first.ledger.mapped and os.path.getsize(first.path) == first.size
    spool.ack(written[:50])  # a checkpoint in the sealed segment, appended after its records
    assert os.path.getsize(first.path) == first.size
    spool.close()
    files = sorted(tmp_path.glob("*.wal"))
    for path in files:
        parsed = parse_records(path.read_bytes())
        assert parsed.issues == [] and parsed.length == path.stat().st_size
    again = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=64 * 1024)
    replayed = []
    while batch := again.next_batch(1000, 10**8):
        replayed.extend(batch)
        again.ack(batch)
    again.close()
    assert [e.event_id for e in replayed] == [e.event_id for e in written[50:]]


KILLED_WITH_A_MAPPED_HEAD = """
import os, signal, sys
sys.path[:0] = [{root!r}]
from telemetry_sinks.delivery.envelope import Envelope
from telemetry_sinks.delivery.spool import Spool
spool = Spool(sys.argv[1], max_bytes=10**8, segment_bytes=10**7)
events = [Envelope(f"id-{{n}}", '{{"n": %d}}' % n) for n in range(int(sys.argv[2]))]
for env in events:
    spool.write(env)
spool.ack(events[:10])  # a checkpoint through the mapping
assert spool._head.ledger.mapped
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_process_killed_with_a_mapped_head_leaves_every_record_for_the_next_one(tmp_path, caplog):
    """SIGKILL: what was copied into the mapping is in the page cache, as a write(2) would have
    put it; the next process reads every record after the checkpoint, reports no damage for the
    reserved zeros, and cuts the file to its records before appending its own checkpoints."""
    count = 5000
    done = run_script(KILLED_WITH_A_MAPPED_HEAD, tmp_path, count)
    assert done.returncode == -signal.SIGKILL, done.stderr
    (path,) = tmp_path.glob("*.wal")
    length, reserved = _mapped_records(path)
    assert reserved and reserved == bytes(len(reserved))  # killed before the cut
    spool = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=10**7)
    with caplog.at_level("WARNING", logger="telemetry_sinks.delivery"):
        first = spool.next_batch(100, 10**8)
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]
    assert [e.event_id for e in first] == [f"id-{n}" for n in range(10, 110)]
    assert path.stat().st_size == length - len(reserved)  # cut to the records
    assert spool.size == path.stat().st_size  # the reserved room is not counted once cut
    spool.ack(first)
    spool.close()
    parsed = parse_records(path.read_bytes())
    assert parsed.issues == [] and len(parsed.records) == count
    assert parsed.unsettled()[0][0] == "id-110"
    again = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=10**7)
    while batch := again.next_batch(1000, 10**8):
        again.ack(batch)
    assert again.size == 0 and not list(tmp_path.glob("*.wal"))  # a drained spool holds nothing
    again.close()


FILE_SYSTEM_FULL = """
import json, os, resource, signal, sys
sys.path[:0] = [{root!r}]
from telemetry_sinks.delivery.envelope import Envelope
from telemetry_sinks.delivery.spool import REFUSED, Spool
spool = Spool(sys.argv[1], max_bytes=10**9, segment_bytes=10**7)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, resource.RLIM_INFINITY))
refused, error = [], None
for n in range(1000):
    if spool.write(Envelope(f"id-{{n}}", '{{"n": %d, "s": "%s"}}' % (n, "x" * 100)))[0] == REFUSED:
        refused.append(n)
        error = error or spool.write_error
spool.close()
print(json.dumps([refused, error]))
"""


def test_a_file_that_cannot_grow_refuses_the_event_rather_than_crash_the_process(tmp_path):
    """A mapped file written past the room the file system gave it would kill the process with
    SIGBUS; the room is reserved before it is used, so a file that cannot grow (here at
    RLIMIT_FSIZE, which refuses as a full disk does) refuses the event with the OS error, the
    process lives on, the segment is sealed and the next events go to a new one, every record
    intact."""
    done = run_script(FILE_SYSTEM_FULL, tmp_path)
    assert done.returncode == 0, done.stderr
    refused, error = json.loads(done.stdout)
    assert refused and refused[0] > 200 and "File too large" in error
    records = []
    for path in sorted(tmp_path.glob("*.wal")):
        parsed = parse_records(path.read_bytes())
        assert parsed.issues == [] and path.stat().st_size <= 40_000
        records += [event_id for event_id, _ in parsed.records]
    assert records == [f"id-{n}" for n in range(1000) if n not in refused]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_writes_to_the_parents_mapped_head(tmp_path):
    """The child sees the parent's head mapped too: what it still holds (an envelope it then has
    acknowledged) must not put a checkpoint into the parent's file."""
    spool = Spool(str(tmp_path), max_bytes=10**8, segment_bytes=10**7)
    written = [Envelope(next_event_id(), f'{{"n":{n}}}') for n in range(50)]
    for env in written:
        spool.write(env)
    head = spool._head
    assert head is not None and head.ledger.mapped
    before = Path(head.path).read_bytes()
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            spool.after_fork_in_child()
            spool.ack(written[:20])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert Path(head.path).read_bytes() == before
    spool.ack(written[:20])  # the parent's own checkpoint still goes in
    assert parse_records(Path(head.path).read_bytes()).settled == written[19].end
    spool.close()


CUT_UNDER_THE_MAPPING = """
import json, os, signal, sys
sys.path[:0] = [{root!r}]
from telemetry_sinks.delivery.envelope import Envelope
from telemetry_sinks.delivery.spool import Spool
spool = Spool(sys.argv[1], max_bytes=10**8, segment_bytes=10**7)
outcomes = [spool.write(Envelope(f"id-{{n}}", '{{"n": %d}}' % n))[0] for n in range(100)]
head = spool._head
assert head.ledger.mapped
os.truncate(head.path, 0)  # someone else cuts the file: its pages are gone under the mapping
outcomes.append(spool.write(Envelope("id-100", '{{"n": 100}}'))[0])
error = spool.write_error
outcomes += [spool.write(Envelope(f"id-{{n}}", '{{"n": %d}}' % n))[0] for n in range(101, 200)]
print(json.dumps([outcomes, error, head is not spool._head]), flush=True)
if sys.argv[2] == "then-a-real-sigbus":
    os.kill(os.getpid(), signal.SIGBUS)  # not a copy into a segment: the default, the process ends
spool.close()
"""


@pytest.mark.parametrize("after", ["close", "then-a-real-sigbus"])
def test_a_mapped_head_cut_under_the_process_refuses_one_event_instead_of_a_sigbus(tmp_path, after):
    """A copy into pages the file no longer has raises SIGBUS, which would end the application.
    The spool's handler turns it into the append's OSError: that event is refused (the engine
    keeps it in memory), the head is sealed, and the next events go to a new segment.  A SIGBUS
    that is not such a copy still gets the handler installed before (here the default)."""
    done = run_script(CUT_UNDER_THE_MAPPING, tmp_path, after)
    assert done.returncode == (0 if after == "close" else -signal.SIGBUS), done.stderr
    outcomes, error, new_head = json.loads(done.stdout.splitlines()[0])
    assert outcomes[:100] == ["kept"] * 100
    assert outcomes[100] == "refused" and "SIGBUS" in error
    assert outcomes[101:] == ["kept"] * 99 and new_head
    if after == "close":
        files = sorted(tmp_path.glob("*.wal"))
        records = [r[0] for path in files for r in parse_records(path.read_bytes()).records]
        assert records == [f"id-{n}" for n in range(101, 200)]  # the first file was emptied by the cut
