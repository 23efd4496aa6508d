"""The durable queue: recovery after torn writes and corruption, the full policy, disk full."""

import os
import subprocess

import pytest
from hypothesis import given, settings, strategies as st

from edge_agent.queue import DurableQueue
from protocol.batch import Batch, Record, decode_payload

DAY = 86400
T0 = 20000 * DAY


def batch(seq, meters=3, hours=range(4), boot=1):
    recs = [Record("%04x.0" % m, T0 + h * 3600, "1-0:1.8.0", 1000 * m + h) for h in hours for m in range(meters)]
    return Batch("c-0001", boot, seq, recs)


def open_queue(path, max_bytes=1 << 20, segment_bytes=4096):
    return DurableQueue(str(path), max_bytes, segment_bytes).open()


def test_appended_batches_survive_reopen_in_order_with_link_cursor(tmp_path):
    q = open_queue(tmp_path)
    for s in range(10):
        q.append(batch(s, meters=10), (3, 100 + s))
    q.close()
    q = open_queue(tmp_path)
    assert [k for k in q.entries] == [(1, s) for s in range(10)]
    assert q.link_cursor == (3, 109)
    assert decode_payload(q.read(q.entries[(1, 4)])).records == batch(4, meters=10).records
    assert len(q.segments) > 1  # 4 KB segments rotated


def test_acked_batches_are_gone_after_reopen_and_segments_deleted(tmp_path):
    q = open_queue(tmp_path)
    for s in range(10):
        q.append(batch(s), (3, s))
    for s in range(7):
        assert q.ack((1, s))
    assert not q.ack((1, 0))  # twice: nothing to do
    q.close()
    q = open_queue(tmp_path)
    assert list(q.entries) == [(1, 7), (1, 8), (1, 9)]
    for s in (7, 8, 9):
        q.ack((1, s))
    assert q.segments == [] and q.bytes == 0
    q.close()
    assert open_queue(tmp_path).link_cursor == (3, 9)  # kept in link.state once no record carries it


@settings(max_examples=40, deadline=None)
@given(cut=st.integers(min_value=1, max_value=2000))
def test_a_torn_last_record_is_dropped_and_nothing_else(tmp_path_factory, cut):
    d = tmp_path_factory.mktemp("torn")
    q = open_queue(d, segment_bytes=1 << 20)
    sizes = [q.append(batch(s), (1, s)).size for s in range(5)]
    q.close()
    seg = os.path.join(d, sorted(n for n in os.listdir(d) if n.endswith(".q"))[-1])
    cut = min(cut, sizes[-1] - 1)
    with open(seg, "r+b") as f:
        f.truncate(sum(sizes) - cut)  # power cut in the middle of the last append
    q = open_queue(d, segment_bytes=1 << 20)
    assert list(q.entries) == [(1, s) for s in range(4)]
    assert q.torn_tails == 1 and q.corrupt_records == 0
    assert q.link_cursor == (1, 3)
    q.append(batch(9), (1, 9))  # and appending goes on after the cut
    q.close()
    assert list(open_queue(d, segment_bytes=1 << 20).entries)[-1] == (1, 9)


def test_a_corrupted_record_is_quarantined_and_the_rest_survive(tmp_path):
    q = open_queue(tmp_path, segment_bytes=1 << 20)
    entries = [q.append(batch(s), (1, s)) for s in range(5)]
    q.close()
    seg = entries[2].segment.path
    with open(seg, "r+b") as f:
        f.seek(entries[2].offset + 60)
        byte = f.read(1)
        f.seek(entries[2].offset + 60)
        f.write(bytes([byte[0] ^ 0xFF]))  # bit rot inside batch 2
    q = open_queue(tmp_path, segment_bytes=1 << 20)
    assert list(q.entries) == [(1, 0), (1, 1), (1, 3), (1, 4)]
    assert q.corrupt_records == 1 and q.torn_tails == 0
    assert os.listdir(tmp_path / "quarantine")


def test_full_queue_thins_old_hours_but_keeps_each_registers_newest_reading(tmp_path):
    q = open_queue(tmp_path, max_bytes=24000, segment_bytes=4000)
    seq = 0
    newest = {}
    for day in range(30):  # far more than fits: 30 days x 24 hours x 3 meters
        b = batch(seq, hours=range(day * 24, day * 24 + 24))
        for r in b.records:
            newest[r.meter_id] = (r.ts, r.value)
        assert q.append(b, (1, seq)) is not None
        seq += 1
        assert q.bytes <= 24000
    assert q.thinned_records > 0
    kept = {}
    for e in q.entries.values():
        for r in decode_payload(q.read(e)).records:
            assert r.ts % DAY == 0 or kept.get(r.meter_id, (0,))[0] < r.ts or r.ts == newest[r.meter_id][0]
            if r.ts >= kept.get(r.meter_id, (-1,))[0]:
                kept[r.meter_id] = (r.ts, r.value)
    assert kept == newest  # the newest cumulative reading of every register is still queued
    q.close()
    assert open_queue(tmp_path, max_bytes=24000, segment_bytes=4000).thinned_records == 0  # a fresh count


def test_when_even_thinning_cannot_make_room_the_append_is_refused_not_dropped(tmp_path):
    q = open_queue(tmp_path, max_bytes=9000, segment_bytes=4000)
    seq = 0
    while True:
        # every batch is new meters: each reading is the newest of its register, none may go
        b = Batch("c-0001", 1, seq, [Record("%04x.0" % (seq * 50 + m), T0, "1-0:1.8.0", m) for m in range(50)])
        if q.append(b, (1, seq)) is None:
            break
        seq += 1
    assert seq > 0 and q.refused_appends == 1
    assert len(q.entries) == seq  # nothing already queued was lost
    assert q.thinned_records == 0


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KB tmpfs: a real ENOSPC. Needs root (CI and this machine run as root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here: %s" % r.stderr.decode().strip())
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


def test_disk_full_refuses_appends_keeps_the_queue_readable_and_recovers(tiny_disk):
    q = DurableQueue(str(tiny_disk / "q"), 64 << 20, 32 << 10).open()  # budget far above the disk
    seq = 0
    while q.append(batch(seq, meters=20, hours=range(seq * 24, seq * 24 + 24)), (1, seq)) is not None:
        seq += 1
        assert seq < 10000
    assert q.write_errors >= 1 and q.refused_appends >= 1
    q.close()
    q = DurableQueue(str(tiny_disk / "q"), 64 << 20, 32 << 10).open()
    assert set(q.entries) == {(1, s) for s in range(seq)}  # every batch that was made durable is there
    for e in q.entries.values():
        decode_payload(q.read(e))
    for key in list(q.entries)[:len(q.entries) // 2]:
        q.ack(key)  # central caught up: room again
    assert q.append(batch(seq), (1, seq)) is not None
