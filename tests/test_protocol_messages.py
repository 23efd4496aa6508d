"""Application messages: every type round-trips, fits a frame, and refuses what it cannot mean."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol import frame, messages
from protocol.errors import ProtocolError
from tests.protocol_strategies import any_message, examples_settings, message_of


@pytest.mark.parametrize("cls", messages.MESSAGES, ids=lambda c: c.__name__)
@examples_settings(200)
@given(data=st.data())
def test_round_trip(cls, data):
    msg = data.draw(message_of(cls))
    wire = msg.encode()
    assert wire[0] == cls.TYPE
    assert len(wire) - struct.calcsize("<B" + cls.FORMAT) == (len(getattr(msg, cls.TAIL)) if cls.TAIL else 0)
    assert messages.decode(wire) == msg
    assert messages.decode(wire).encode() == wire


def test_type_bytes_are_unique():
    assert len({m.TYPE for m in messages.MESSAGES}) == len(messages.MESSAGES)


@pytest.mark.parametrize("cls", messages.MESSAGES, ids=lambda c: c.__name__)
def test_largest_message_fits_one_frame(cls):
    largest = struct.calcsize("<B" + cls.FORMAT) + cls.TAIL_MAX
    assert largest <= frame.PAYLOAD_MAX


@examples_settings(200)
@given(message_of(messages.Hourly))
def test_hourly_of_three_channels_fits_a_64_byte_frame(hourly):
    wire = frame.seal_frame(frame.Frame(0xBA1A, frame.T_DATA, 0x0101, frame.CONCENTRATOR, 1, hourly.encode()),
                            bytes(16))
    assert len(hourly.totals) == messages.CHANNELS == 3
    assert len(wire) <= frame.FRAME_MAX == 64


@examples_settings(100)
@given(any_message)
def test_decoded_message_travels_in_a_sealed_frame(msg):
    key = bytes(range(16))
    wire = frame.seal_frame(frame.Frame(1, frame.T_DATA, 2, 0, 3, msg.encode()), key)
    assert messages.decode(frame.open_frame(wire, key).payload) == msg


def test_hourly_helpers():
    h = messages.Hourly(490000, 0, 150, 0x72, (10, 20, 30), (1, 2, 3, 4, messages.DELTA_UNKNOWN, 6))
    assert h.channel_mask() == 7 and h.tariff & 0x0F == 2
    assert h.delta(0, 1) == 1 and h.delta(2, 1) == 3 and h.delta(0, 2) == 4 and h.delta(1, 2) is None
    assert h == messages.decode(h.encode())
    r = messages.Registers(490000, 1, (1, 2, 3, 4, 5))
    assert r.total() == 15
    assert messages.SetGroups(1, b"\x01\x00\x02\x01").group_ids() == [1, 0x102]


HOURLY = messages.Hourly(490000, 0, 150, 0x71, (1, 2, 3), (4, 5, 6, 7, 8, 9))


@pytest.mark.parametrize("bad", [
    messages.Hourly(490000, 0, 150, 0x70, (1, 2, 3), (4, 5, 6, 7, 8, 9)),  # tariff 0
    messages.Hourly(490000, 0, 150, 0x75, (1, 2, 3), (4, 5, 6, 7, 8, 9)),  # tariff 5
    messages.Registers(1, 3, (0, 0, 0, 0, 0)),
    messages.Event(1, 0, 0, 0),
    messages.Event(1, messages.EV_CLOCK_LIMITED + 1, 0, 0),
    messages.TimeSync(1, 2, 1000),
    messages.ConfigChunk(1, 0, 1, 10, 12, b"abc"),
    messages.SetLimit(1, 3, 0, 0, 100),
    messages.SetLimit(1, 0, 5, 0, 100),
    messages.SetLimit(1, 0, 0, 2, 100),
    messages.Relay(1, 3, 0),
    messages.GroupCmd(1, 7, 2, 0),
    messages.BackfillReq(1, 100, 0),
    messages.BackfillReq(1, 100, 45 * 24 + 1),
    messages.Tagged(5, bytes(8), messages.Relay(1, 0, 0).encode()),  # a tag never makes a relay command broadcastable
    messages.Tagged(5, bytes(8), b""),
    messages.SetGroups(1, b"\x01"),
], ids=repr)
def test_decoder_refuses_meaningless_fields(bad):
    layout = "<B" + type(bad).FORMAT
    flat = []
    for name in type(bad).FIELDS:
        v = getattr(bad, name)
        flat.extend(v) if isinstance(v, tuple) else flat.append(v)
    wire = struct.pack(layout, bad.TYPE, *flat) + (bytes(getattr(bad, bad.TAIL)) if bad.TAIL else b"")
    with pytest.raises(ProtocolError):
        messages.decode(wire)


@pytest.mark.parametrize("bad", [
    messages.Hourly(490000, 0, 256, 0x71, (1, 2, 3), (4, 5, 6, 7, 8, 9)),  # battery does not fit a byte
    messages.Hourly(-1, 0, 150, 0x71, (1, 2, 3), (4, 5, 6, 7, 8, 9)),
    messages.Hourly(490000, 0, 150, 0x71, (1, 2, 1 << 32), (4, 5, 6, 7, 8, 9)),
    messages.ConfigChunk(1, 0, 1, 0, 100, bytes(30)),
], ids=repr)
def test_encoder_refuses_what_the_layout_cannot_hold(bad):
    with pytest.raises(ProtocolError):
        bad.encode()


def test_framing_errors():
    wire = HOURLY.encode()
    for bad in (b"", b"\x00", b"\xee" + wire[1:], wire[:-1], wire + b"\x00"):
        with pytest.raises(ProtocolError):
            messages.decode(bad)
    with pytest.raises(ProtocolError):
        messages.decode(messages.SetGroups(1, bytes(16)).encode() + b"\x00\x00")


def test_construction_mistakes_are_type_errors():
    with pytest.raises(TypeError):
        messages.Relay(1, 2)
    with pytest.raises(TypeError):
        messages.Relay(1, 2, 3, 4)
    with pytest.raises(TypeError):
        messages.Relay(1, 2, 3, colour=4)
