"""protocol/link.py: framing survives any payload, and noise costs only the frames it hits."""

import pytest
from hypothesis import given, settings, strategies as st

from protocol import link
from protocol.errors import ProtocolError

bodies = st.binary(min_size=1, max_size=link.BODY_MAX)


@given(st.lists(bodies, min_size=1, max_size=8), st.integers(min_value=1, max_value=64))
def test_any_bodies_come_through_in_any_chunking(frames, chunk):
    wire = b"".join(link.encode(b) for b in frames)
    r = link.Reader()
    got = []
    for i in range(0, len(wire), chunk):
        got.extend(r.feed(wire[i:i + chunk]))
    assert got == frames and r.bad_frames == 0


@settings(max_examples=200)
@given(st.lists(bodies, min_size=3, max_size=6), st.data())
def test_a_flipped_byte_loses_at_most_its_frame(frames, data):
    wires = [link.encode(b) for b in frames]
    hit = data.draw(st.integers(min_value=0, max_value=len(frames) - 1))
    w = bytearray(wires[hit])
    pos = data.draw(st.integers(min_value=1, max_value=len(w) - 2))
    w[pos] ^= data.draw(st.integers(min_value=1, max_value=255))
    wires[hit] = bytes(w)
    r = link.Reader()
    got = r.feed(b"".join(wires))
    others = [f for i, f in enumerate(frames) if i != hit]
    # every other frame arrives; the hit one never arrives altered (CRC-16 catches it)
    assert [g for g in got if g in others] == others or others == []
    assert all(g in frames for g in got)


def test_noise_longer_than_a_frame_is_counted_without_growing_memory():
    r = link.Reader()
    assert r.feed(b"\x7e" + b"\x55" * 5000 + b"\x7e" + link.encode(b"\x04abcd")) == [b"\x04abcd"]
    assert r.bad_frames == 1


def test_pack_and_unpack_round_trip_and_refuse_bad_bodies():
    body = link.pack(link.L_ACK, 7, 1234, 500)
    assert link.unpack(body) == (link.L_ACK, (7, 1234, 500), b"")
    with pytest.raises(ProtocolError):
        link.unpack(b"\x63")
    with pytest.raises(ProtocolError):
        link.unpack(body[:-1])
    with pytest.raises(ProtocolError):
        link.unpack(link.pack(link.L_RECORDS, 1, 0, 2) + b"\x00" * link.RECORD_LEN)
    with pytest.raises(ProtocolError):
        link.pack(link.L_ACK, -1, 0, 0)


class _Stream:
    def __init__(self, data):
        self.data = bytearray(data)
        self.out = bytearray()

    def read(self, n):
        chunk = bytes(self.data[:n])
        del self.data[:n]
        return chunk

    def write(self, data):
        self.out += data


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), bodies.map(link.encode)), max_size=6))
def test_the_agents_link_never_fails_on_any_bytes(chunks):
    from edge_agent.linkport import LinkSession

    s = LinkSession(_Stream(b"".join(chunks)), (1, 0))
    frames, others = s.poll()
    for readings, events, cursor in frames:
        assert cursor[1] <= s.expected and all(r.value >= 0 for r in readings)
    s.ack(100)
    assert s.stream.out  # it still answers


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=0xFFFF), st.binary(max_size=40), st.booleans())
def test_the_collector_never_fails_on_any_message(addr, payload, backfill):
    import sys

    from balans.toolchain import REPO

    sys.path.insert(0, str(REPO / "tests" / "mpy"))
    from test_j100uc import setup

    hal, down, c, agent = setup(modules={0x2A: ["electricity", "water", None], addr: ["gas", None, "heat"]})
    c.on_uplink(addr, payload, backfill)
    c.on_uplink(0x2A, payload, backfill)
    c.tick()
    assert c.ring.held() <= c.ring.capacity
