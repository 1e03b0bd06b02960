"""Fuzz target for the spool reader, ``telemetry_sinks.delivery.spool.parse_records``.

With atheris (``pip install atheris``; not needed in CI)::

    python tests/reliability/fuzz_spool.py -atheris_runs=1000000 [corpus_dir]

Without atheris, the same checks run on random mutations of valid segments::

    python tests/reliability/fuzz_spool.py --random 100000 [--seed N]

Each input is used twice: as raw bytes, and as a recipe (records, then mutations
such as bit flips, truncation, inserted or deleted bytes, repeated ranges) for a
damaged segment.  :func:`check` holds the reader's contract: it never raises; the
records and skipped ranges it reports cover the buffer exactly; every record it
returns is present in the buffer with a matching checksum; on a damaged
segment, it returns only records that were written, and every record the damage
did not touch.  ``test_spool_fuzz.py`` runs the same checks with hypothesis in CI.
"""

from __future__ import annotations

import random
import sys
import zlib
from collections.abc import Callable

from telemetry_sinks.delivery.spool import HEADER, MAGIC, encode_record, parse_records

Record = tuple[str, str]


def check(buf: bytes) -> list[Record]:
    """The reader's contract on any bytes; returns the records found."""
    parsed = parse_records(buf)
    covered = sum(i.length for i in parsed.issues) + sum(len(encode_record(*r)) for r in parsed.records)
    assert covered == len(buf), (covered, len(buf))
    position = 0
    for event_id, data in parsed.records:
        body = event_id.encode("ascii") + b"\n" + data.encode("utf-8")
        record = HEADER.pack(MAGIC, len(body), zlib.crc32(body)) + body
        found = buf.find(record, position)
        assert found >= 0, f"returned a record that is not in the buffer: {event_id!r}"
        position = found + len(record)
    for issue in parsed.issues:
        assert issue.kind in ("torn tail", "corrupted record") and issue.length > 0
        assert 0 <= issue.offset < len(buf)
    return parsed.records


def segment(records: list[Record]) -> tuple[bytes, list[tuple[int, int]]]:
    """A valid segment and the (start, end) span of each record."""
    chunks, spans, position = [], [], 0
    for record in records:
        encoded = encode_record(*record)
        chunks.append(encoded)
        spans.append((position, position + len(encoded)))
        position += len(encoded)
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


def check_damaged(records: list[Record], kind: str, at: int, size: int, value: int) -> None:
    """Damage a valid segment once; check the contract and what the reader keeps."""
    buf, spans = segment(records)
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
        how = (rng.choice(KINDS), rng.randint(0, 600), rng.randint(0, 40), rng.randint(0, 10**6))
        check_damaged(records, *how)
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
        check_damaged(records, KINDS[fdp.ConsumeIntInRange(0, len(KINDS) - 1)], fdp.ConsumeIntInRange(0, 600),
                      fdp.ConsumeIntInRange(0, 40), fdp.ConsumeIntInRange(0, 10**6))

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
