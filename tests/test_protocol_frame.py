"""Radio frames: layout, authentication, relaying, the size budget and the replay window."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import frame
from protocol.errors import AuthError, ProtocolError, ReplayError
from tests.protocol_strategies import examples_settings, frames

KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))


def sample(payload=b"hello, meter", **fields):
    f = dict(net_id=0x1234, ftype=frame.T_DATA | frame.F_ACK_REQ, src=0x002A, dst=frame.CONCENTRATOR,
             counter=77, payload=payload)
    f.update(fields)
    return frame.Frame(**f)


def same_fields(a, b):
    return all(getattr(a, k) == getattr(b, k)
               for k in ("net_id", "ftype", "src", "dst", "counter", "hops", "link_src", "link_dst"))


@examples_settings(300)
@given(frames())
def test_round_trip(f):
    wire = frame.seal_frame(f, KEY)
    assert len(wire) == frame.HEADER_LEN + len(f.payload) + frame.TAG_LEN <= frame.FRAME_MAX
    assert wire[0] == len(wire) - 1
    got = frame.open_frame(wire, KEY, f.net_id)
    assert same_fields(got, f) and got.payload == f.payload
    header = frame.parse_header(wire)
    assert same_fields(header, f) and header.payload == wire[frame.HEADER_LEN:]


def test_payload_is_encrypted():
    wire = frame.seal_frame(sample(b"A" * 20), KEY)
    assert b"AAAA" not in wire


def test_budget_is_the_cc1101_fifo():
    assert frame.HEADER_LEN + frame.PAYLOAD_MAX + frame.TAG_LEN == frame.FRAME_MAX == 64
    assert len(frame.seal_frame(sample(bytes(frame.PAYLOAD_MAX)), KEY)) == 64
    with pytest.raises(ProtocolError):
        frame.seal_frame(sample(bytes(frame.PAYLOAD_MAX + 1)), KEY)
    wire = frame.seal_frame(sample(bytes(frame.PAYLOAD_MAX)), KEY) + b"\x00"
    wire[0] += 1
    with pytest.raises(ProtocolError):
        frame.parse_header(wire)


@examples_settings(100)
@given(frames(), st.lists(st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)), min_size=1, max_size=5))
def test_relaying_keeps_the_tag_valid(f, hops):
    f.hops = 0
    wire = frame.seal_frame(f, KEY)
    for link_src, link_dst in hops:
        frame.relay_header(wire, link_src, link_dst)
    got = frame.open_frame(wire, KEY)
    assert got.payload == f.payload and got.hops == len(hops)
    assert (got.link_src, got.link_dst) == hops[-1]
    assert (got.src, got.dst, got.counter) == (f.src, f.dst, f.counter)


def test_hop_limit_is_30():
    wire = frame.seal_frame(sample(), KEY)
    for _ in range(frame.MAX_HOPS):
        frame.relay_header(wire, 1, 2)
    assert frame.open_frame(wire, KEY).hops == frame.MAX_HOPS == 30
    with pytest.raises(ProtocolError):
        frame.relay_header(wire, 1, 2)
    assert frame.parse_header(wire).hops == 30  # a refused relay leaves the frame as it was
    wire[frame.O_HOPS] = 31
    with pytest.raises(ProtocolError):
        frame.parse_header(wire)
    with pytest.raises(ProtocolError):
        frame.seal_frame(sample(hops=31), KEY)


def test_link_flags_ride_in_the_hops_byte_per_hop():
    wire = frame.seal_frame(sample(), KEY)
    frame.relay_header(wire, 5, 6)
    frame.set_link_flags(wire, frame.L_ACK_REQ)
    got = frame.open_frame(wire, KEY)  # the tag stays valid: the flags are not authenticated, like the hop count
    assert got.hops == 1 and got.link_flags == frame.L_ACK_REQ and frame.wants_ack(wire)
    frame.set_link_flags(wire, frame.L_PREFERRED)
    assert frame.parse_header(wire).link_flags == frame.L_PREFERRED and frame.parse_header(wire).hops == 1
    frame.relay_header(wire, 6, 7)  # the next hop's sender sets its own
    assert frame.parse_header(wire).hops == 2 and frame.parse_header(wire).link_flags == 0
    assert frame.MAX_HOPS <= frame.HOPS_MASK


def test_an_unacknowledged_broadcast_wants_no_ack_until_flagged():
    wire = frame.seal_frame(sample(ftype=frame.T_BCAST, dst=frame.BROADCAST), KEY)
    assert not frame.wants_ack(wire) and frame.wants_ack(frame.seal_frame(sample(), KEY))


def test_wrong_key_or_network_is_refused():
    wire = frame.seal_frame(sample(), KEY)
    with pytest.raises(AuthError):
        frame.open_frame(wire, OTHER_KEY)
    with pytest.raises(ProtocolError):
        frame.open_frame(wire, KEY, expected_net_id=0x4321)
    forged = bytearray(wire)
    forged[1] ^= 0x01  # same frame claimed for another network
    with pytest.raises(AuthError):
        frame.open_frame(forged, KEY)


MUTABLE = range(frame.O_HOPS, frame.O_SRC)  # hops, link_src, link_dst


@pytest.mark.parametrize("payload", [b"", b"x" * 7, bytes(range(39))])
def test_every_bit_outside_the_link_fields_is_authenticated(payload):
    wire = frame.seal_frame(sample(payload), KEY)
    for bit in range(len(wire) * 8):
        bad = bytearray(wire)
        bad[bit // 8] ^= 1 << (bit % 8)
        if bit // 8 in MUTABLE:
            try:
                got = frame.open_frame(bad, KEY)
            except ProtocolError:
                assert bit // 8 == frame.O_HOPS  # only a hop count above the limit is refused
            else:
                assert got.payload == payload
        else:
            with pytest.raises(ProtocolError):
                frame.open_frame(bad, KEY)


def test_a_refused_frame_type_or_field_range_is_a_protocol_error():
    for fields in ({"ftype": 0}, {"ftype": 7}, {"ftype": 0x101}, {"src": 0x10000}, {"dst": -1},
                   {"net_id": 1 << 16}, {"counter": 1 << 32}, {"link_src": 70000}):
        with pytest.raises(ProtocolError):
            frame.seal_frame(sample(**fields), KEY)
    wire = frame.seal_frame(sample(), KEY)
    wire[3] = frame.T_OTA + 1
    with pytest.raises(ProtocolError):
        frame.parse_header(wire)
    with pytest.raises(ProtocolError):
        frame.parse_header(wire[:frame.HEADER_LEN + frame.TAG_LEN - 1])


def test_frames_differ_in_nonce_by_counter():
    a = frame.seal_frame(sample(counter=1), KEY)
    b = frame.seal_frame(sample(counter=2), KEY)
    assert a[frame.HEADER_LEN:] != b[frame.HEADER_LEN:]


def test_key_cipher_reuses_one_context_per_key():
    assert frame.key_cipher(KEY) is frame.key_cipher(bytearray(KEY))
    assert frame.key_cipher(KEY) is not frame.key_cipher(OTHER_KEY)


# ---- replay window ----------------------------------------------------------------------


class ReferenceWindow:
    """The replay rule stated plainly: every accepted counter remembered for ever."""

    def __init__(self, window):
        self.window = window
        self.seen = {}

    def acceptable(self, src, counter):
        seen = self.seen.get(src)
        if not seen:
            return True
        return counter not in seen and counter > max(seen) - self.window

    def accept(self, src, counter):
        self.seen.setdefault(src, set()).add(counter)


@examples_settings(300)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 120), st.booleans()), max_size=200),
       st.integers(0, 0xFFFFFF00))
def test_replay_window_matches_the_reference(ops, base):
    window = frame.ReplayWindow()
    reference = ReferenceWindow(frame.ReplayWindow.WINDOW)
    for src, offset, only_check in ops:
        counter = base + offset
        expected = reference.acceptable(src, counter)
        try:
            (window.check if only_check else window.accept)(src, counter)
            got = True
        except ReplayError:
            got = False
        assert got == expected, (src, counter)
        if expected and not only_check:
            reference.accept(src, counter)
        if src in reference.seen:
            assert window.highest(src) == max(reference.seen[src])


def test_replay_window_cases():
    w = frame.ReplayWindow()
    w.accept(7, 100)
    with pytest.raises(ReplayError):
        w.accept(7, 100)  # duplicate
    w.accept(7, 98)  # late, inside the window
    with pytest.raises(ReplayError):
        w.accept(7, 98)
    w.accept(7, 100 + frame.ReplayWindow.WINDOW + 5)  # a jump: 100 is now stale
    with pytest.raises(ReplayError):
        w.check(7, 101)
    w.accept(8, 0)  # sources are independent
    assert w.highest(9) is None


def test_a_restored_window_takes_nothing_up_to_the_kept_counter():
    w = frame.ReplayWindow(max_sources=2)
    w.restore(7, 100)
    for old in (0, 70, 71, 99, 100):
        with pytest.raises(ReplayError):
            w.check(7, old)
    w.accept(7, 101)
    assert dict(w.tops()) == {7: 101}
    w.restore(8, 5)
    with pytest.raises(ReplayError):
        w.restore(9, 5)  # bounded like accept


def test_replay_window_bounds_its_sources():
    w = frame.ReplayWindow(max_sources=3)
    for src in range(3):
        w.accept(src, 1)
    with pytest.raises(ReplayError):
        w.accept(3, 1)
    w.accept(2, 2)  # known sources still work
