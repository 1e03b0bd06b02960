"""Fuzz target for the spool reader, ``telemetry_sinks.delivery.spool.parse_records``.

With atheris (``pip install atheris``; not needed in CI)::

    python tests/reliability/fuzz_spool.py -atheris_runs=1000000 [corpus_dir]

Without atheris, the same checks run on random mutations of valid segments::

    python tests/reliability/fuzz_spool.py --random 100000 [--seed N]

Each input is used twice: as raw bytes, and as a recipe (records and acknowledgement
checkpoints, then mutations such as bit flips, truncation, inserted or deleted bytes,
repeated ranges) for a damaged segment.  :func:`check` holds the reader's contract: it
finds exactly what the pure-Python reader (the specification of the C scan) finds; it
never raises; the records, checkpoints and skipped ranges it reports, and the zeros
that may end it (room reserved), cover the buffer exactly, in order; every record and
checkpoint it returns is at the place it names, with a matching checksum; the settled
offset is the largest offset of a checkpoint whose record is there (ending at that
offset, before the checkpoint, with the checksum the checkpoint names).  On a damaged
segment it returns only records that were written, every record the damage did not
touch, and every untouched record the intact segment had not settled is still
unsettled: damage never makes a reader skip an event it should replay.
``test_spool_fuzz.py`` runs the same checks with hypothesis in CI.
"""

from __future__ import annotations

import random
import sys
import zlib
from collections.abc import Callable

from telemetry_sinks.delivery import spool
from telemetry_sinks.delivery.spool import (
    CHECKPOINT_MAGIC,
    CHECKPOINT_SIZE,
    HEADER,
    MAGIC,
    encode_checkpoint,
    encode_record,
    parse_records,
)

Record = tuple[str, str]
#: After record i, a checkpoint covering the first ``count`` records: (i, count).
Marks = list[tuple[int, int]]


def check(buf: bytes) -> list[Record]:
    """The reader's contract on any bytes; returns the records found."""
    parsed = parse_records(buf)
    # The C scan (when built) finds exactly what the Python one, the specification, finds.
    assert parsed == spool._parse(buf, spool.scan_in_python)
    assert len(parsed.ends) == len(parsed.records)
    spans = [(i.offset, i.offset + i.length) for i in parsed.issues]
    sums = {}
    for (event_id, data), end, checksum in zip(parsed.records, parsed.ends, parsed.checksums):
        body = event_id.encode("ascii") + b"\n" + data.encode("utf-8")
        record = HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body
        assert buf[end - len(record) : end] == record, f"a record that is not where it says: {event_id!r}"
        assert checksum == zlib.crc32(body)
        sums[end] = checksum
        spans.append((end - len(record), end))
    for position, offset, checksum in parsed.checkpoints:
        assert buf[position : position + CHECKPOINT_SIZE] == encode_checkpoint(offset, checksum)
        assert buf[position : position + 4] == CHECKPOINT_MAGIC
        spans.append((position, position + CHECKPOINT_SIZE))
    if parsed.length < len(buf):  # zeros to the end: room a mapped head reserved, never written
        assert buf[parsed.length :] == bytes(len(buf) - parsed.length)
        spans.append((parsed.length, len(buf)))
    spans.sort()
    # Items, skipped ranges and the reserved room tile the buffer: in order, no gap, no overlap.
    assert [a for a, _ in spans] == [0, *(b for _, b in spans[:-1])] if spans else not buf, spans
    assert (spans[-1][1] if spans else 0) == len(buf)
    for issue in parsed.issues:
        assert issue.kind in ("torn tail", "corrupted record") and issue.length > 0
        assert 0 <= issue.offset < len(buf)
    settled = parsed.settled
    assert settled == max((o for p, o, c in parsed.checkpoints if o <= p and sums.get(o) == c), default=0)
    assert parsed.unsettled() == [(i, d, e) for (i, d), e in zip(parsed.records, parsed.ends) if e > settled]
    return parsed.records


def segment(records: list[Record], marks: Marks = ()) -> tuple[bytes, list[tuple[int, int]]]:
    """A valid segment and the (start, end) span of each record; ``marks``: checkpoints."""
    chunks, spans, position = [], [], 0
    after = {i: count for i, count in marks}
    for index, record in enumerate(records):
        encoded = encode_record(*record)
        chunks.append(encoded)
        spans.append((position, position + len(encoded)))
        position += len(encoded)
        if index in after and after[index]:
            count = min(after[index], index + 1)
            covered = encode_record(*records[count - 1])
            checksum = HEADER.unpack_from(covered)[2]
            chunks.append(encode_checkpoint(spans[count - 1][1], checksum))
            position += CHECKPOINT_SIZE
    return b"".join(chunks), spans


def mutate(buf: bytes, kind: str, at: int, size: int, value: int) -> tuple[bytes, int, int, int]:
    """Damage ``buf``; return (new buffer, start and end of the damage in ``buf``, length change)."""
    at = min(at, len(buf))
    end = min(len(buf), at + max(size, 1))
    if kind == "flip" and buf:
        at = min(at, len(buf) - 1)
        return buf[:at] + bytes([buf[at] ^ (value % 255 + 1)]) + buf[at + 1 :], at, at + 1, 0
    if kind == "truncate":
        return buf[:at], at, len(buf), at - len(buf)
    if kind == "delete":
        return buf[:at] + buf[end:], at, end, at - end
    if kind == "insert":
        junk = bytes((value + i * 31) % 256 for i in range(max(size, 1)))
        if value % 3 == 0:
            junk = MAGIC + junk  # a false start of a record
        return buf[:at] + junk + buf[at:], at, at, len(junk)
    if kind == "zero":
        return buf[:at] + b"\0" * (end - at) + buf[end:], at, end, 0
    if kind == "repeat":
        return buf[:end] + buf[at:end] + buf[end:], end, end, end - at
    if kind == "length" and buf:
        at = min(at, len(buf) - 1)
        forged = (value * 7919 % 2**32).to_bytes(4, "big")
        return buf[:at] + forged + buf[at + 4 :], at, min(len(buf), at + 4), max(0, at + 4 - len(buf))
    return buf, 0, 0, 0


KINDS = ("flip", "truncate", "delete", "insert", "zero", "repeat", "length")


def check_damaged(
    records: list[Record], kind: str, at: int, size: int, value: int, marks: Marks = ()
) -> None:
    """Damage a valid segment once; check the contract and what the reader keeps."""
    buf, spans = segment(records, marks)
    intact = parse_records(buf)
    assert intact.records == records and intact.issues == []
    unsettled = {(i, d) for i, d, _ in intact.unsettled()}
    damaged, start, end, shift = mutate(buf, kind, at, size, value)
    found = check(damaged)
    written = set(records)
    assert set(found) <= written, "the reader made up a record"
    # Records the damage did not touch are all found (``repeat`` may add a copy of some).
    untouched = [r for r, (a, b) in zip(records, spans) if b <= start or a >= end]
    if kind == "truncate":
        untouched = [r for r, (a, b) in zip(records, spans) if b <= start]
    missing = [r for r in untouched if r not in found]
    assert not missing, f"{kind} at {start}..{end} (shift {shift}) lost untouched records {missing[:3]}"
    # ... and damage never settles what was not: a lost checkpoint only means a longer replay.
    replayed = {(i, d) for i, d, _ in parse_records(damaged).unsettled()}
    skipped = [r for r in untouched if r in unsettled and r not in replayed]
    assert not skipped, f"{kind} at {start}..{end}: unsettled records taken for settled {skipped[:3]}"


def random_marks(rng: random.Random, count: int) -> Marks:
    """Checkpoints as a writer makes them: after some records, covering a growing prefix."""
    marks, covered = [], 0
    for index in range(count):
        if rng.random() < 0.4:
            covered = rng.randint(covered, index + 1)
            marks.append((index, covered))
    return marks


def random_records(rng: random.Random) -> list[Record]:
    alphabet = "abcdef0123456789"
    return [
        ("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16))) + f"-{n:012d}",
         f'{{"n":{n},"s":"{"x" * rng.randint(0, 40)}"}}')
        for n in range(rng.randint(0, 8))
    ]


def run_random(iterations: int, seed: int, report: Callable[[str], None] = print) -> None:
    rng = random.Random(seed)
    for iteration in range(iterations):
        check(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200))))
        records = random_records(rng)
        how = (rng.choice(KINDS), rng.randint(0, 600), rng.randint(0, 200), rng.randint(0, 10**6))
        check_damaged(records, *how, marks=random_marks(rng, len(records)))
        if iteration and iteration % 10_000 == 0:
            report(f"{iteration} inputs, no failure")
    report(f"{iterations} inputs (seed {seed}), no failure")


def atheris_main() -> None:  # pragma: no cover - needs atheris
    import atheris

    def one_input(data: bytes) -> None:
        check(data)
        fdp = atheris.FuzzedDataProvider(data)
        records = [
            (f"{fdp.ConsumeIntInRange(0, 2**32):x}-{n:012d}",
             fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 60)).encode("ascii", "replace").decode())
            for n in range(fdp.ConsumeIntInRange(0, 6))
        ]
        records = [(i, d.replace("\n", " ")) for i, d in records]
        marks = [(i, fdp.ConsumeIntInRange(0, i + 1)) for i in range(len(records)) if fdp.ConsumeBool()]
        marks = [(i, max(c for _, c in marks[: n + 1])) for n, (i, _) in enumerate(marks)]
        check_damaged(records, KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)], fdp.ConsumeIntInRange(0, 600),
                      fdp.ConsumeIntInRange(0, 200), fdp.ConsumeIntInRange(0, 10**6), marks)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":  # pragma: no cover - a command-line tool
    if "--random" in sys.argv:
        count = int(sys.argv[sys.argv.index("--random") + 1])
        seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
        run_random(count, seed)
    else:
        try:
            import atheris  # noqa: F401
        except ImportError:
            raise SystemExit("atheris is not installed: pip install atheris, or use --random N") from None
        atheris_main()
