"""The serial line between the concentrator's radio MCU (J100UC) and its edge agent.

MicroPython and CPython. Framing is HDLC-like (RFC 1662 byte stuffing): a frame
is FLAG, the escaped body, the escaped CRC-16/CCITT-FALSE of the body, FLAG.
A corrupted or truncated frame fails its CRC and is counted and dropped; the
next FLAG resynchronises the reader, so line noise costs only the frames it hit.

Body: one type byte, then a fixed little-endian layout::

    HELLO    c->a  boot u32, base u32           this boot's records; the oldest still held is base
    RECORDS  c->a  boot u32, first u32, n u8, n x RECORD_LEN bytes
    ACK      a->c  boot u32, upto u32, credit u16   records < upto are on the agent's disk;
                                                 send at most up to upto + credit (flow control)
    TIME     a->c  unix u32                     network time for the mesh
    CMD      a->c  cmd_id u32, dst u16, message  a down message (its seq is set by the MCU)
    RESULT   c->a  cmd_id u32, src u16, status u8, detail u8
    MODULE   c->a  addr u16, last_heard u32, battery u8, rssi i8, hops u8, missing u16
    STATS    c->a  bad_frames u32, unknown u32, overflow u32, held u16, modules u16
    OTA      both  an update's hop messages (firmware/common/ota/transfer.py): ANNOUNCE and
                   FRAGMENT a->c, NEED c->a; the agent is the concentrator's parent for updates
    OTA_STATUS c->a addr u16, session u16, state u8, missing u16   a module's progress (messages.OtaStatus)
    ROSTER   a->c  addr u16, 3 x resource u8 (RESOURCES index, 0xFF none); tail: the module's 16-byte
                   AES key, or 16 zero bytes to remove the module       the concentrator's module table
    ROSTER_OK c->a addr u16, check u32          the check value of the key now held (0: no such module)

A record is RECORD_LEN bytes: kind u8, addr u16, channel u8, code u8, ts u32, value u32.
kind READING: ``code`` is protocol.obis.RESOURCES index << 4 | tariff, ``value`` pulses.
kind EVENT: ``code`` is the event code, ``value`` the event's signed value.
Reliability is go-back-N over record indices: the agent acknowledges cumulatively
only what it has made durable, and the MCU resends from ``upto`` when no progress comes.
"""

import struct

from protocol.compat import BlockCipher, const
from protocol.errors import ProtocolError

FLAG = const(0x7E)
ESC = const(0x7D)
ESC_XOR = const(0x20)
BODY_MAX = const(255)  # the largest body: RECORDS with MAX_RECORDS records

L_HELLO = const(1)
L_RECORDS = const(2)
L_ACK = const(3)
L_TIME = const(4)
L_CMD = const(5)
L_RESULT = const(6)
L_MODULE = const(7)
L_STATS = const(8)
L_OTA = const(9)
L_OTA_STATUS = const(10)
L_ROSTER = const(11)
L_ROSTER_OK = const(12)

K_READING = const(1)
K_EVENT = const(2)


RECORD_LEN = const(13)
RECORD_FMT = "<BHBBIi"
READING_FMT = "<BHBBII"
MAX_RECORDS = const(18)  # 10 + 18 * 13 = 244 bytes: one body stays under BODY_MAX

_LAYOUT = {
    L_HELLO: "<BII",
    L_RECORDS: "<BIIB",
    L_ACK: "<BIIH",
    L_TIME: "<BI",
    L_CMD: "<BIH",
    L_RESULT: "<BIHBB",
    L_MODULE: "<BHIBbBH",
    L_STATS: "<BIIIHH",
    L_OTA: "<B",
    L_OTA_STATUS: "<BHHBH",
    L_ROSTER: "<BHBBB",
    L_ROSTER_OK: "<BHI",
}
# frames whose body continues after the fixed layout (records, a message)
_TAILED = (L_RECORDS, L_CMD, L_OTA, L_ROSTER)
KEY_LEN = const(16)
NO_RESOURCE = const(0xFF)


def _make_table():
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


try:
    from binascii import crc_hqx as _crc_hqx

    def crc16(data):
        """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
        return _crc_hqx(data, 0xFFFF)

except ImportError:  # MicroPython's binascii has crc32 only
    _TABLE = _make_table()

    def crc16(data):
        """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF)."""
        crc = 0xFFFF
        t = _TABLE
        for b in data:
            crc = ((crc << 8) & 0xFFFF) ^ t[(crc >> 8) ^ b]
        return crc


def encode(body):
    """Return the wire bytes of one frame body (FLAG, stuffed body and CRC, FLAG)."""
    if not body or len(body) > BODY_MAX:
        raise ProtocolError("link body of %d bytes" % len(body))
    crc = crc16(body)
    out = bytearray()
    out.append(FLAG)
    for b in body:
        if b == FLAG or b == ESC:
            out.append(ESC)
            out.append(b ^ ESC_XOR)
        else:
            out.append(b)
    for b in (crc >> 8, crc & 0xFF):
        if b == FLAG or b == ESC:
            out.append(ESC)
            out.append(b ^ ESC_XOR)
        else:
            out.append(b)
    out.append(FLAG)
    return bytes(out)


def pack(ftype, *fields, tail=b""):
    """Body of a frame of type ``ftype`` from its fixed fields and optional tail."""
    try:
        return struct.pack(_LAYOUT[ftype], ftype, *fields) + bytes(tail)
    except (KeyError, struct.error, OverflowError, ValueError, TypeError) as e:
        raise ProtocolError("cannot pack link frame %r: %s" % (ftype, e))


def unpack(body):
    """Return (type, fields tuple, tail bytes) of a body; raise ProtocolError if malformed."""
    if not body:
        raise ProtocolError("empty link body")
    fmt = _LAYOUT.get(body[0])
    if fmt is None:
        raise ProtocolError("unknown link frame type %d" % body[0])
    size = struct.calcsize(fmt)
    if len(body) < size or (len(body) > size and body[0] not in _TAILED):
        raise ProtocolError("link frame type %d of %d bytes" % (body[0], len(body)))
    fields = struct.unpack_from(fmt, body, 0)
    tail = bytes(body[size:])
    if body[0] == L_RECORDS and len(tail) != fields[3] * RECORD_LEN:
        raise ProtocolError("RECORDS says %d records but carries %d bytes" % (fields[3], len(tail)))
    if body[0] == L_ROSTER and len(tail) != KEY_LEN:
        raise ProtocolError("ROSTER carries a key of %d bytes, not %d" % (len(tail), KEY_LEN))
    return fields[0], fields[1:], tail


def key_check(key):
    """A key's check value (the payment industry's KCV): AES_key(0^128)'s first 4 bytes, 0 for no key.

    The agent and the concentrator compare keys by it without the key crossing back.
    """
    if not any(key):
        return 0
    out = bytearray(16)
    BlockCipher(key).encrypt_block(bytes(16), out)
    return struct.unpack_from("<I", out, 0)[0] or 1


def records(tail):
    """Yield (kind, addr, channel, code, ts, value) for each record of a RECORDS tail."""
    for off in range(0, len(tail), RECORD_LEN):
        kind = tail[off]
        fmt = READING_FMT if kind == K_READING else RECORD_FMT
        yield struct.unpack_from(fmt, tail, off)


class Reader:
    """Splits a byte stream into frame bodies; counts frames that fail CRC or overflow.

    ``feed(data)`` returns a list of good bodies. One preallocated buffer holds
    the frame being received, so a long burst of noise cannot grow memory.
    """

    def __init__(self):
        self._buf = bytearray(BODY_MAX + 2)
        self._n = 0
        self._esc = False
        self._overrun = False
        self.bad_frames = 0
        self.good_frames = 0

    def feed(self, data):
        out = []
        buf = self._buf
        for b in data:
            if b == FLAG:
                if self._n or self._overrun:
                    body = self._finish()
                    if body is not None:
                        out.append(body)
                continue
            if b == ESC:
                self._esc = True
                continue
            if self._esc:
                b ^= ESC_XOR
                self._esc = False
            if self._n < len(buf):
                buf[self._n] = b
                self._n += 1
            else:
                self._overrun = True
        return out

    def _finish(self):
        n = self._n
        overrun = self._overrun
        self._n = 0
        self._esc = False
        self._overrun = False
        if overrun or n < 3:
            self.bad_frames += 1
            return None
        body = bytes(self._buf[:n - 2])
        if crc16(body) != (self._buf[n - 2] << 8 | self._buf[n - 1]):
            self.bad_frames += 1
            return None
        self.good_frames += 1
        return body
