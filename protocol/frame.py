"""Radio frames: the bytes a CC1101-class transceiver puts on air.

Layout (little-endian; see docs/protocol.md for the full table)::

    off len field
    0   1   length      bytes that follow (the transceiver's variable-length byte)
    1   2   net_id      network id: frames of other networks are dropped unread
    3   1   ftype       frame type (low nibble) and flags (high nibble)
    4   1   hops        hops travelled so far, 0..MAX_HOPS (low 6 bits),
                        and two per-hop link flags (top bits)     (changes per hop)
    5   2   link_src    sender of this hop                        (changes per hop)
    7   2   link_dst    receiver of this hop, BROADCAST = all     (changes per hop)
    9   2   src         origin of the frame
    11  2   dst         final destination (CONCENTRATOR, a module, or BROADCAST)
    13  4   counter     origin's frame counter, never reused under one key
    17  n   payload     encrypted with AES-128-CCM
    17+n 8  tag         CCM tag over the immutable header and the payload

The mutable fields (hops, link_src, link_dst) let every module relay a frame
without holding its origin's key; everything else is authenticated. A whole
frame is at most FRAME_MAX bytes, the CC1101's 64-byte FIFO, so it is sent and
received in one FIFO load without refills (no FIFO-threshold interrupts).
"""

import struct

from protocol.ccm import CCM, TAG_LEN
from protocol.compat import const
from protocol.errors import ProtocolError, ReplayError

FRAME_MAX = const(64)  # CC1101 TX/RX FIFO size
HEADER_LEN = const(17)
PAYLOAD_MAX = const(39)  # FRAME_MAX - HEADER_LEN - TAG_LEN
MAX_HOPS = const(30)  # the original system's 30 relay levels

CONCENTRATOR = const(0x0000)
BROADCAST = const(0xFFFF)

# Frame types (low nibble of ftype)
T_DATA = const(1)  # application message, end to end, origin's module key
T_ACK = const(2)  # per-hop acknowledgement
T_BEACON = const(3)  # mesh control: routing advertisement
T_JOIN = const(4)  # mesh control: join request and answer
T_BCAST = const(5)  # network-wide broadcast (ripple control, time), network key
T_OTA = const(6)  # firmware image pages

# Flags (high nibble of ftype)
F_ACK_REQ = const(0x10)  # the next hop must acknowledge
F_BACKFILL = const(0x20)  # payload is archive data sent on request, not live
F_FOLLOWS = const(0x40)  # sent right behind a frame to the same receivers, who are awake: no wake preamble

# Link flags: the top bits of the hops byte, set by the sender of each hop (not authenticated, like
# the link addresses; relay_header clears them). They say what ftype cannot, since a relay may not
# change the sealed flags.
HOPS_MASK = const(0x1F)  # the hop count; 30 fits
L_ACK_REQ = const(0x80)  # this hop must acknowledge: a broadcast's copy to one child
L_PREFERRED = const(0x40)  # the sender chose this receiver as its preferred parent
L_DENSE = const(0x80)  # on an upward frame: the sender hears many flood forwarders a level up (mac.DENSE_FORWARDERS)
L_HAD = const(0x40)  # on an ACK of a broadcast's copy: the child had the broadcast already (from the flood)
L_ELSEWHERE = const(0x80)  # on an ACK of a broadcast's copy: the child's preferred parent is another now
# Another frame for this receiver follows right behind (IEEE 802.15.4's frame pending): it stays awake
# after its acknowledgement. Without it the receiver goes back to sampling at once; before, the board
# HAL listened 30 ms after every ACK it sent, ~27 ms x 15.7 mA a received frame (balans bench radio).
L_MORE = const(0x20)

# Offsets of the fields a relay reads and rewrites without decoding the frame
O_HOPS = const(4)
O_LINK_SRC = const(5)
O_LINK_DST = const(7)
O_SRC = const(9)
O_DST = const(11)
O_COUNTER = const(13)

_HDR = "<BHBBHHHHI"
_U32 = const(0xFFFFFFFF)


class Frame:
    """One decoded frame. ``payload`` is plaintext after ``open_frame``."""

    def __init__(self, net_id, ftype, src, dst, counter, payload, hops=0, link_src=None, link_dst=None):
        self.net_id = net_id
        self.ftype = ftype
        self.src = src
        self.dst = dst
        self.counter = counter
        self.payload = payload
        self.hops = hops
        self.link_src = src if link_src is None else link_src
        self.link_dst = dst if link_dst is None else link_dst
        self.link_flags = 0  # L_ACK_REQ, L_PREFERRED, L_MORE: per hop, read by parse_header

    @property
    def kind(self):
        return self.ftype & 0x0F

    def __repr__(self):
        return "Frame(type=%d src=%04x dst=%04x ctr=%d hops=%d len=%d)" % (
            self.kind, self.src, self.dst, self.counter, self.hops, len(self.payload))


def _nonce(buf):
    """13-byte CCM nonce from the immutable header: unique while (key, src, counter) is."""
    n = bytearray(13)
    n[0:2] = buf[1:3]  # net_id
    n[2:10] = buf[9:17]  # src, dst, counter
    n[10] = buf[3]  # ftype
    return n


def _aad(buf, bound=b""):
    """Authenticated header bytes: everything but hops and the link addresses; then ``bound``."""
    return bytes(buf[1:4]) + bytes(buf[9:17]) + bound


def seal_frame(frame, key, bound=b""):
    """Encode and encrypt ``frame`` under ``key``; return the bytes for the air (a new bytearray).

    ``bound``: bytes the frame vouches for without carrying them (authenticated after the header):
    an acknowledgement names the frame it acknowledges so, and only that frame's sender, who knows
    them, can open it.
    """
    n = len(frame.payload)
    if n > PAYLOAD_MAX:
        raise ProtocolError("payload of %d bytes exceeds %d" % (n, PAYLOAD_MAX))
    if not 0 <= frame.hops <= MAX_HOPS:
        raise ProtocolError("hop count out of range")
    if not 0 <= frame.counter <= _U32:
        raise ProtocolError("frame counter out of range")
    if not (0 <= frame.ftype <= 0xFF and T_DATA <= frame.kind <= T_OTA):
        raise ProtocolError("frame type %r" % frame.ftype)
    # struct.pack_into would raise on CPython but silently truncate on MicroPython
    for address in (frame.net_id, frame.src, frame.dst, frame.link_src, frame.link_dst):
        if not 0 <= address <= 0xFFFF:
            raise ProtocolError("network id or address %r is not 16-bit" % address)
    buf = bytearray(HEADER_LEN + n + TAG_LEN)
    struct.pack_into(_HDR, buf, 0, len(buf) - 1, frame.net_id, frame.ftype, frame.hops,
                     frame.link_src, frame.link_dst, frame.src, frame.dst, frame.counter)
    key_cipher(key).seal_into(_nonce(buf), _aad(buf, bound), frame.payload, buf, HEADER_LEN)
    return buf


def parse_header(buf):
    """Check framing and return a Frame whose payload is still sealed.

    Relays use this: they read and rewrite the mutable fields without a key.
    """
    n = len(buf)
    if n < HEADER_LEN + TAG_LEN:
        raise ProtocolError("frame of %d bytes is shorter than header and tag" % n)
    if n > FRAME_MAX:
        raise ProtocolError("frame of %d bytes exceeds %d" % (n, FRAME_MAX))
    length, net_id, ftype, hops, link_src, link_dst, src, dst, counter = struct.unpack_from(_HDR, buf, 0)
    if length != n - 1:
        raise ProtocolError("length byte %d does not match frame size %d" % (length, n))
    link_flags = hops & ~HOPS_MASK
    hops &= HOPS_MASK
    if hops > MAX_HOPS:
        raise ProtocolError("hop count %d exceeds %d" % (hops, MAX_HOPS))
    kind = ftype & 0x0F
    if kind < T_DATA or kind > T_OTA:
        raise ProtocolError("unknown frame type %d" % kind)
    f = Frame(net_id, ftype, src, dst, counter, bytes(buf[HEADER_LEN:]), hops, link_src, link_dst)
    f.link_flags = link_flags
    return f


def open_frame(buf, key, expected_net_id=None, bound=b""):
    """Parse, authenticate and decrypt ``buf``, sealed with ``bound`` (seal_frame); return a Frame with
    plaintext payload."""
    frame = parse_header(buf)
    if expected_net_id is not None and frame.net_id != expected_net_id:
        raise ProtocolError("frame of network %04x, expected %04x" % (frame.net_id, expected_net_id))
    frame.payload = bytes(key_cipher(key).open(_nonce(buf), _aad(buf, bound), frame.payload))
    return frame


def relay_header(buf, link_src, link_dst):
    """Rewrite a sealed frame (a bytearray) in place for its next hop; its tag stays valid.

    Allocation-free, so a relay forwards frames without touching the heap. The link
    flags of the last hop are cleared: the relay sets its own (set_link_flags).
    """
    hops = (buf[O_HOPS] & HOPS_MASK) + 1
    if hops > MAX_HOPS:
        raise ProtocolError("hop limit reached")
    buf[O_HOPS] = hops
    struct.pack_into("<HH", buf, O_LINK_SRC, link_src, link_dst)
    return buf


def set_link_flags(buf, flags):
    """Set the link flags (L_ACK_REQ, L_PREFERRED, L_MORE) of a sealed frame's next hop; its tag stays valid."""
    buf[O_HOPS] = buf[O_HOPS] & HOPS_MASK | flags


def wants_ack(buf):
    """Whether the receiver of this hop must acknowledge ``buf`` (its sender then listens for it)."""
    return bool(buf[3] & F_ACK_REQ or buf[O_HOPS] & L_ACK_REQ)


_ciphers = {}


def key_cipher(key):
    """One CCM context per key, reused: a concentrator opens frames of 240 modules all day."""
    key = bytes(key)
    c = _ciphers.get(key)
    if c is None:
        if len(_ciphers) >= 512:  # bounded: 240 module keys, network keys, and rotation
            _ciphers.clear()
        c = _ciphers[key] = CCM(key)
    return c


class ReplayWindow:
    """Accepts each (origin, counter) once; tolerates reordering within WINDOW counters.

    The sliding bitmap of IPsec (RFC 4303, 3.4.3): a counter above the highest
    seen moves the window; one inside it is accepted once; an older one is stale.
    Retransmissions of a frame whose acknowledgement was lost arrive here as
    duplicates and are refused, which is what stops them being counted twice.

    ``check`` and ``accept`` of a known origin allocate nothing (tests/mpy proves
    it): state lives in two dicts of small ints, updated in place.
    """

    WINDOW = 30  # bits in the bitmap: the bitmap stays a small int even on 32-bit ports

    def __init__(self, max_sources=1024):
        self._top = {}  # src -> highest counter accepted
        self._bits = {}  # src -> bitmap: bit i set = counter (top - i) accepted
        self._max_sources = max_sources

    def check(self, src, counter):
        """Raise ReplayError if (src, counter) must be refused; else do nothing."""
        top = self._top.get(src)
        if top is None or counter > top:
            return
        age = top - counter
        if age >= self.WINDOW:
            raise ReplayError("stale counter %d from %04x (highest %d)" % (counter, src, top))
        if self._bits[src] & (1 << age):
            raise ReplayError("replayed counter %d from %04x" % (counter, src))

    def accept(self, src, counter):
        """Record (src, counter) as used; call after the frame authenticated."""
        self.check(src, counter)
        top = self._top.get(src)
        if top is None:
            if len(self._top) >= self._max_sources:
                raise ReplayError("too many sources")
            self._top[src] = counter
            self._bits[src] = 1
        elif counter > top:
            shift = counter - top
            if shift < self.WINDOW:
                # drop the bits that would slide out before shifting, so no bigint appears
                keep = (1 << (self.WINDOW - shift)) - 1
                self._bits[src] = ((self._bits[src] & keep) << shift) | 1
            else:
                self._bits[src] = 1
            self._top[src] = counter
        else:
            self._bits[src] |= 1 << (top - counter)

    def highest(self, src):
        """The highest counter accepted from ``src``, or None if none yet."""
        return self._top.get(src)

    def tops(self):
        """(src, highest counter accepted) of every origin."""
        return self._top.items()

    def restore(self, src, top):
        """Take every counter of ``src`` up to ``top`` as used: the highest a reset kept in flash."""
        if src not in self._top and len(self._top) >= self._max_sources:
            raise ReplayError("too many sources")
        self._top[src] = top
        self._bits[src] = (1 << self.WINDOW) - 1
