"""The spool reader on damaged segments (hypothesis), and the Spool replaying damaged files.

``tests/delivery`` already checks the reader on arbitrary bytes, on garbage between
intact records and on truncation.  Added here: damage *inside* records and
checkpoints (bit flips, deleted, inserted, zeroed or repeated bytes, forged length
fields, false record starts), with the contract of ``fuzz_spool.check`` (never
raises, covers the buffer exactly, returns only items present with a matching
checksum, only records that were written, every record the damage did not touch,
and never takes an unsettled record for a settled one); and a real ``Spool``
replaying such a file: it never raises and replays exactly the records the reader
finds unsettled.
"""

from __future__ import annotations

import logging
import os
import tempfile

import pytest
from fuzz_spool import KINDS, check, check_damaged, run_random, segment
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemetry_sinks.delivery.spool import Spool

ids = st.from_regex(r"[0-9a-f]{1,16}-[0-9]{1,12}", fullmatch=True)
datas = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
records = st.lists(st.tuples(ids, datas), max_size=8, unique=True)
damage = st.tuples(st.sampled_from(KINDS), st.integers(0, 700), st.integers(0, 200), st.integers(0, 10**6))
#: Checkpoints as a writer makes them: after record i, covering a growing prefix (see fuzz_spool).
lags = st.lists(st.one_of(st.none(), st.integers(0, 3)), max_size=8)


def marks_from(written, lag):
    marks, covered = [], 0
    for index, back in zip(range(len(written)), lag):
        if back is not None:
            covered = max(covered, index + 1 - back)
            marks.append((index, covered))
    return marks

pytestmark = [
    pytest.mark.timeout(120),
    # Other tests' background threads (clients reconnecting) may use ``random`` meanwhile.
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning"),
]


@settings(max_examples=500, deadline=None)
@given(records, damage, lags)
def test_reader_on_a_damaged_segment_keeps_exactly_the_intact_records(written, how, lag):
    check_damaged(written, *how, marks=marks_from(written, lag))


@settings(max_examples=150, deadline=None)
@given(records, st.lists(damage, min_size=2, max_size=5))
def test_reader_on_a_segment_damaged_several_times_never_invents_a_record(written, hows):
    from fuzz_spool import mutate

    buf, _ = segment(written)
    for how in hows:
        buf = mutate(buf, *how)[0]
    assert set(check(buf)) <= set(written)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records, damage, lags)
def test_a_spool_replays_exactly_the_records_the_reader_finds_unsettled(written, how, lag):
    from fuzz_spool import mutate

    from telemetry_sinks.delivery.spool import parse_records

    buf, _ = segment(written, marks_from(written, lag))
    damaged = mutate(buf, *how)[0]
    check(damaged)
    kept = [(event_id, data) for event_id, data, _ in parse_records(damaged).unsettled()]
    logging.getLogger("telemetry_sinks.delivery").setLevel(logging.ERROR)  # warnings expected
    with tempfile.TemporaryDirectory() as directory:
        with open(os.path.join(directory, f"{1:020d}-feedface-000001.wal"), "wb") as file:
            file.write(damaged)
        spool = Spool(directory, max_bytes=10**6, segment_bytes=10**6)
        replayed = []
        while batch := spool.next_batch(3, 10**6):
            replayed.extend((e.event_id, e.data) for e in batch)
            spool.ack(batch)
        spool.close()
        assert replayed == kept
        assert not any(name.endswith(".wal") for name in os.listdir(directory))
    logging.getLogger("telemetry_sinks.delivery").setLevel(logging.NOTSET)


@pytest.mark.timeout(60)
def test_the_standalone_fuzz_script_runs_without_atheris():
    lines = []
    run_random(2000, seed=7, report=lines.append)
    assert lines[-1].startswith("2000 inputs")
