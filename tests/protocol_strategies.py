"""Hypothesis strategies for valid protocol values, and mutations of valid encodings.

Shared by the round-trip tests (tests/test_protocol_*.py) and the bad-input tests
(tests/test_protocol_fuzz.py).
"""

import struct

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from protocol import frame, ids, messages, obis
from protocol.batch import Ack, Batch, Record

def examples_settings(max_examples):
    """No deadline and no too_slow health check: the shared machine's load says nothing about the code."""
    return settings(max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# struct item code -> (smallest, largest)
_RANGES = {"B": (0, 0xFF), "b": (-0x80, 0x7F), "H": (0, 0xFFFF), "h": (-0x8000, 0x7FFF),
           "I": (0, 0xFFFFFFFF), "i": (-0x80000000, 0x7FFFFFFF)}


def _items(layout):
    """'IB5I8s' -> ['I', 'B', 'I', 'I', 'I', 'I', 'I', '8s']: a byte string is one item"""
    items, count = [], ""
    for ch in layout:
        if ch.isdigit():
            count += ch
        elif ch == "s":
            items.append(count + ch)
            count = ""
        else:
            items.extend(ch * int(count or 1))
            count = ""
    return items


def _u16_list_bytes(max_ids):
    return st.lists(st.integers(0, 0xFFFF), max_size=max_ids).map(
        lambda ids_: b"".join(struct.pack("<H", g) for g in ids_))


@st.composite
def _config_chunk(draw):
    data = draw(st.binary(max_size=messages.ConfigChunk.TAIL_MAX))
    offset = draw(st.integers(0, 0xFFFF - len(data)))
    total = draw(st.integers(offset + len(data), 0xFFFF))
    return {"offset": offset, "total": total, "data": data}


# Fields whose meaning narrows what the layout can hold (see each class's validate)
_NARROWED = {
    messages.Hourly: {"tariff": st.builds(lambda t, mask: mask << 4 | t, st.integers(1, messages.TARIFFS),
                                          st.integers(0, 15))},
    messages.Registers: {"channel": st.integers(0, messages.CHANNELS - 1)},
    messages.Event: {"code": st.integers(1, messages.EV_CLOCK_LIMITED),
                     "channel": st.sampled_from([0, 1, 2, 0xFF])},  # 0xFF: the module itself
    messages.Ack: {"status": st.integers(messages.ST_OK, messages.ST_BUSY)},
    messages.OtaStatus: {"state": st.integers(messages.OTA_LOADING, messages.OTA_FAILED)},
    messages.TimeSync: {"ms": st.integers(0, 999)},
    messages.SetLimit: {"channel": st.integers(0, 2), "tariff": st.integers(0, messages.TARIFFS),
                        "source": st.integers(0, 1)},
    messages.Relay: {"action": st.integers(messages.RELAY_OPEN, messages.RELAY_AUTO)},
    messages.GroupCmd: {"action": st.integers(0, 1)},
    messages.BackfillReq: {"count": st.integers(1, 45 * 24)},
    messages.SetGroups: {"groups": _u16_list_bytes(8)},
}
_COMPOSITE = {messages.ConfigChunk: _config_chunk()}


@st.composite
def message_of(draw, cls):
    """A valid message of class ``cls`` with every field drawn."""
    items = iter(_items(cls.FORMAT))
    narrowed = _NARROWED.get(cls, {})
    fields = draw(_COMPOSITE[cls]) if cls in _COMPOSITE else {}
    for name in cls.FIELDS:
        width = cls.GROUPS.get(name, 0)
        codes = [next(items) for _ in range(width or 1)]
        if name in fields:
            continue
        if name in narrowed:
            fields[name] = draw(narrowed[name])
            continue
        values = tuple(draw(st.binary(min_size=int(c[:-1]), max_size=int(c[:-1])) if c.endswith("s")
                            else st.integers(*_RANGES[c])) for c in codes)
        fields[name] = values if width else values[0]
    if cls.TAIL and cls.TAIL not in fields:
        fields[cls.TAIL] = draw(narrowed.get(cls.TAIL, st.binary(max_size=cls.TAIL_MAX)))
    return cls(**fields)


_NARROWED[messages.Tagged] = {"payload": st.one_of(message_of(messages.GroupCmd),
                                                    message_of(messages.TimeSync)).map(lambda m: m.encode())}
any_message = st.sampled_from(messages.MESSAGES).flatmap(message_of)

u16 = st.integers(0, 0xFFFF)


@st.composite
def frames(draw, max_payload=frame.PAYLOAD_MAX):
    """A valid Frame with a plaintext payload."""
    kind = draw(st.integers(frame.T_DATA, frame.T_OTA))
    flags = draw(st.sampled_from([0, frame.F_ACK_REQ, frame.F_BACKFILL, frame.F_ACK_REQ | frame.F_BACKFILL]))
    return frame.Frame(draw(u16), kind | flags, draw(u16), draw(u16), draw(st.integers(0, 0xFFFFFFFF)),
                       draw(st.binary(max_size=max_payload)), draw(st.integers(0, frame.MAX_HOPS)),
                       draw(u16), draw(u16))


@st.composite
def records(draw):
    addr = draw(u16)
    channel = draw(st.integers(0, 2))
    register = obis.code(draw(st.sampled_from(obis.RESOURCES)), draw(st.sampled_from([0, 1, 2, 3, 4, obis.PENALTY])))
    return Record(ids.meter_id(addr, channel), draw(st.integers(0, (1 << 40) - 1)), register,
                  draw(st.integers(0, (1 << 64) - 1)))


ids_text = st.text(min_size=1, max_size=64)


@st.composite
def batches(draw, conc=None, max_records=20):
    events = draw(st.lists(st.tuples(ids_text, st.integers(0, (1 << 40) - 1), st.integers(0, 255),
                                     st.integers(-(1 << 63), (1 << 63) - 1)).map(list), max_size=3))
    return Batch(conc if conc is not None else draw(ids_text), draw(st.integers(0, 0xFFFFFFFF)),
                 draw(st.integers(0, (1 << 64) - 1)), draw(st.lists(records(), max_size=max_records)), events)


@st.composite
def acks(draw, conc=None):
    return Ack(conc if conc is not None else draw(ids_text), draw(st.integers(0, 0xFFFFFFFF)),
               draw(st.integers(0, (1 << 64) - 1)), draw(st.sampled_from(["stored", "duplicate", "rejected"])),
               draw(st.text(max_size=40)))


# ---- mutations of valid encodings -----------------------------------------------------------
#
# A mutation is spelled by a few "edit script" bytes that apply_edits interprets:
# one hypothesis draw instead of a dozen keeps 10,000 examples quick, and shrinking
# the byte string still shrinks the edits.

_ODD_BYTES = (0x00, 0xFF, 0x7F, 0x80, 0x18, 0x1B, 0x9F, 0xBF, 0xD2, 0xF6)
_EDITS = ("flip", "set", "truncate", "insert", "delete", "splice")


def apply_edits(samples, choice, script):
    """Valid encoding samples[choice] after the edits that ``script`` spells, 3 bytes each (1..4 edits).

    The edits are those that radio noise, truncated reads and careless or hostile
    senders produce: bit flips, byte changes, truncation, insertion, deletion and
    a splice of two valid encodings.
    """
    data = bytearray(samples[choice % len(samples)])
    for i in range(0, len(script) - 2, 3):
        op, where, arg = script[i], script[i + 1], script[i + 2]
        edit = _EDITS[op % len(_EDITS)]
        pos = where * (len(data) + 1) // 256
        if edit == "flip" and pos < len(data):
            data[pos] ^= 1 << (arg % 8)
        elif edit == "set" and pos < len(data):
            data[pos] = _ODD_BYTES[arg % len(_ODD_BYTES)] if op >= 128 else arg
        elif edit == "truncate":
            del data[pos:]
        elif edit == "insert":
            data[pos:pos] = bytes([arg]) * (1 + op % 4)
        elif edit == "delete":
            del data[pos:pos + 1 + arg % 8]
        elif edit == "splice":
            other = samples[arg % len(samples)]
            data = data[:pos] + other[op * len(other) // 256:]
    return bytes(data)

