"""An update hop by hop in radio frames: fragments down, one "need" answer up.

A parent sends the update as units: the envelope (part ENVELOPE), the
page-hash table in pages (part TABLE) and the image pages (part IMAGE), each
unit in fragments of FRAGMENT bytes, one per T_OTA frame (table units are
UNIT bytes; image units are the manifest's pages, at most UNIT bytes)::

    FRAGMENT payload  <BHBHB + data: type 0x30, session, part, index, fragment, up to 32 bytes
    NEED payload      <BHBHBBB:      type 0x31, session, part, index, status, have, depth
    ANNOUNCE payload  <BHB + n x u16: type 0x32, session, n, the target modules (n = 0: all)
    ACTIVATE payload  <BHH:           type 0x33, session, seconds from this frame until the switch

``session`` is the update's seq (low 16 bits). A child answers with the unit
it needs next (DLMS image transfer's "first not transferred block") and the
fragments of it it already holds (``have``, one bit each: a unit has at most
8) and its depth in the mesh (the slot it samples in, for the answer), WAIT (it has every page, a child of it not yet), DONE (it and every module
below it have every page), or REFUSED (signature, class, seq or battery). ANNOUNCE tells the
next hop that an update exists and for whom (ota/meshota.py); ACTIVATE, sent by the edge agent
once every target holds the image, tells every module when to switch to it, all at once. Each module checks a page against
the signed table before it keeps it, and sends on only what it kept, so a
corrupted or forged page stops at the first hop. Table pages are passed on
as they come (only the whole table can be checked); a bad one is caught by
every module when its table completes, and asked for again. What a module keeps is in
flash (ota/download.py): after a power cut it answers NEED with what is still
missing. The envelope is held in RAM until complete and the table until
checked; a power cut loses only those partial units.
"""

import struct

from firmware.common.ota.archive import SlotImage
from firmware.common.ota.manifest import ENVELOPE_LEN, MANIFEST_LEN, PAGE_HASH_LEN, Manifest
from firmware.common.ota.slots import ENVELOPE_FILE, TABLE_FILE, read_file
from protocol.compat import const
from protocol.errors import ProtocolError

FRAGMENT_MSG = const(0x30)
NEED_MSG = const(0x31)
ANNOUNCE_MSG = const(0x32)
ACTIVATE_MSG = const(0x33)
ACTIVATE_S = const(600)  # from the agent's ACTIVATE to the switch: the word crosses 30 hops in a few minutes
ENVELOPE = const(0)
TABLE = const(1)
IMAGE = const(2)
NEEDS = const(0)  # status: send (part, index)
DONE = const(1)  # has every page: ready to install
REFUSED = const(2)  # will not take this update
WAIT = const(3)  # has every page, but a child of it does not yet: do not count it finished
FRAGMENT = const(32)  # 7-byte header + 32 = 39: a full frame payload (protocol/frame.py PAYLOAD_MAX)
UNIT = const(256)  # bytes per table or image page; the envelope is one unit of ENVELOPE_LEN
_HEAD = "<BHBHB"
_HEAD_LEN = const(7)
MAX_TARGETS = const(17)  # (39 - 4) // 2 addresses fill one frame payload


def fragments(session, part, index, data, have=0):
    """The FRAGMENT payloads that carry one unit, but those whose bit is set in ``have``."""
    return [struct.pack(_HEAD, FRAGMENT_MSG, session, part, index, i // FRAGMENT) + data[i:i + FRAGMENT]
            for i in range(0, len(data), FRAGMENT) if not have & (1 << (i // FRAGMENT))]


def need(session, part, index, status, have=0, depth=0):
    return struct.pack(_HEAD + "BB", NEED_MSG, session, part, index, status, have, depth)


def announce(session, targets=()):
    """The ANNOUNCE payload: update ``session`` for ``targets`` (module addresses; empty: every module)."""
    if len(targets) > MAX_TARGETS:
        raise ProtocolError("an update names at most %d modules, or all" % MAX_TARGETS)
    return struct.pack("<BHB", ANNOUNCE_MSG, session, len(targets)) + b"".join(
        struct.pack("<H", a) for a in targets)


def activate(session, seconds):
    """The ACTIVATE payload: modules holding update ``session`` switch to it ``seconds`` from now."""
    return struct.pack("<BHH", ACTIVATE_MSG, session, seconds)


def parse_activate(payload):
    """(session, seconds) of an ACTIVATE payload; ProtocolError if it is not one."""
    if len(payload) != 5 or payload[0] != ACTIVATE_MSG:
        raise ProtocolError("not an OTA activation")
    return struct.unpack_from("<HH", payload, 1)


def parse_announce(payload):
    """(session, targets tuple) of an ANNOUNCE payload; ProtocolError if it is not one."""
    if len(payload) < 4 or payload[0] != ANNOUNCE_MSG or len(payload) != 4 + 2 * payload[3] \
            or payload[3] > MAX_TARGETS:
        raise ProtocolError("not an OTA announcement")
    session = struct.unpack_from("<H", payload, 1)[0]
    return session, tuple(struct.unpack_from("<H", payload, 4 + 2 * i)[0] for i in range(payload[3]))


def parse(payload):
    """(type, session, part, index, fragment-or-status, data) of a FRAGMENT or NEED; ProtocolError if not one.

    A NEED's data is its ``have`` and ``depth`` bytes.
    """
    if len(payload) < _HEAD_LEN or payload[0] not in (FRAGMENT_MSG, NEED_MSG) or payload[3] > IMAGE:
        raise ProtocolError("not an OTA transfer message")
    kind, session, part, index, sub = struct.unpack_from(_HEAD, payload, 0)
    data = payload[_HEAD_LEN:]
    if (kind == NEED_MSG and len(data) != 2) or (kind == FRAGMENT_MSG and not 0 < len(data) <= FRAGMENT):
        raise ProtocolError("OTA %s message of %d bytes" % ("need" if kind == NEED_MSG else "fragment", len(payload)))
    return kind, session, part, index, sub, data


class Source:
    """A whole bundle held by its first sender (the edge agent, a test): every unit, for sending."""

    def __init__(self, envelope, table, image, manifest):
        self.session = manifest.seq & 0xFFFF
        self.page_size = manifest.page_size
        self._parts = (envelope, table, image)

    def unit(self, part, index):
        data = self._parts[part]
        if part == ENVELOPE:
            return data if index == 0 else None
        size = self.page_size if part == IMAGE else UNIT
        return data[index * size:(index + 1) * size] or None

    def answer(self, payload):
        """The FRAGMENT payloads that answer a NEED ``payload`` (none for DONE, REFUSED or a unit not held)."""
        kind, session, part, index, status, have = parse(payload)
        if kind != NEED_MSG or status != NEEDS or session != self.session:
            return []
        data = self.unit(part, index)
        return fragments(session, part, index, data, have[0]) if data is not None else []


class Receiver:
    """A module's end of a transfer, over its Updater; also the source its children are sent from."""

    def __init__(self, updater, battery_mv):
        self.updater = updater
        self.battery_mv = battery_mv  # a function: the battery is read when the offer completes
        self.refused = None
        self.rejected = 0  # units that failed their hash or table check: a corrupting or forging hop
        self._unit = None  # (part, index) being assembled
        self._buf = bytearray(UNIT)
        self._have = 0  # fragment bits of that unit
        self._table = None
        self._running = None  # (session, what the running slot serves of it)
        d = updater.download
        self.session = d.manifest.seq & 0xFFFF if d.manifest is not None else None

    def expect(self, session):
        """An announcement named ``session``: ask for its envelope, whatever was refused or held before."""
        if session != self.session:
            self.session, self.refused, self._table, self._unit = session, None, None, None

    def on_fragment(self, session, part, index, number, data):
        """Take one fragment; returns the unit it completed, if any, as (part, index)."""
        if self.refused is not None and session == self.session:
            return None
        if session != self.session:
            if part != ENVELOPE:
                return None  # a new update starts with its envelope
            self.session, self.refused, self._table, self._unit = session, None, None, None
        size = self.unit_size(part, index)
        if size is None or number * FRAGMENT >= size or self.unit(part, index) is not None:
            return None
        if self._unit != (part, index):
            self._unit, self._have = (part, index), 0
        start = number * FRAGMENT
        self._buf[start:start + len(data)] = data
        self._have |= 1 << number
        if self._have != (1 << ((size + FRAGMENT - 1) // FRAGMENT)) - 1:
            return None
        self._unit = None
        self._complete(part, index, bytes(self._buf[:size]))
        return part, index

    def unit_size(self, part, index):
        """Bytes of unit (part, index) of the session, None if there is no such unit (yet)."""
        m = self.updater.download.manifest
        if part == ENVELOPE:
            return ENVELOPE_LEN if index == 0 else None
        if m is None or (m.seq & 0xFFFF) != self.session:
            return None
        if part == IMAGE:
            return m.page_length(index) if index < m.pages else None
        size = min(UNIT, m.pages * PAGE_HASH_LEN - index * UNIT)
        return size if size > 0 else None

    def _complete(self, part, index, data):
        u = self.updater
        try:
            if part == ENVELOPE:
                u.offer(data, self.battery_mv())
            elif part == TABLE:
                m = u.download.manifest
                if self._table is None:
                    self._table = bytearray(m.pages * PAGE_HASH_LEN)
                    self._table_have = 0
                self._table[index * UNIT:index * UNIT + len(data)] = data
                self._table_have |= 1 << index
                if self._table_have == (1 << ((len(self._table) + UNIT - 1) // UNIT)) - 1:
                    u.put_table(self._table)
                    self._table = None
            else:
                u.put_page(index, data)
        except ProtocolError as e:
            if part == ENVELOPE:
                self.refused = str(e)
            else:
                self.rejected += 1
                if part == TABLE:
                    self._table = None  # a bad table: ask for all of it again

    def unit(self, part, index):
        """The unit's bytes if this module holds it checked, else None (what it can send on)."""
        d = self.updater.download
        if d.manifest is None or (d.manifest.seq & 0xFFFF) != self.session:
            return self._running_unit(part, index)
        if part == ENVELOPE:
            return d.envelope if index == 0 else None
        if part == TABLE:  # a relay passes table pages on before it has all; each child checks the whole
            if d.table is not None:
                return d.table[index * UNIT:(index + 1) * UNIT]
            if self._table is not None and self._table_have & (1 << index):
                return bytes(self._table[index * UNIT:(index + 1) * UNIT])
            return None
        if index >= d.manifest.pages or d.table is None or d.is_missing(index):
            return None
        return d.read_page(index)

    def _running_unit(self, part, index):
        """A unit of the image this module runs, if it is the session's: modules that installed it still serve it."""
        if self._running is None or self._running[0] != self.session:
            self._running = (self.session, self._load_running())
        running = self._running[1]
        if running is None:
            return None
        envelope, table, image, m = running
        if part == ENVELOPE:
            return envelope if index == 0 else None
        if part == TABLE:
            return table[index * UNIT:(index + 1) * UNIT] or None
        return image.read(index * m.page_size, m.page_length(index)) if index < m.pages else None

    def _load_running(self):
        slots = self.updater.slots
        state = slots.load()
        if self.session is None or state.seq & 0xFFFF != self.session:
            return None
        base = slots.slot_dir(state.active)
        try:
            envelope = read_file(base + "/" + ENVELOPE_FILE)
            return envelope, read_file(base + "/" + TABLE_FILE), SlotImage(base), Manifest.decode(envelope[:MANIFEST_LEN])
        except (OSError, ValueError):  # provisioned by cable, not over the air: nothing to serve
            return None

    def need(self, depth=0):
        """The NEED payload for the parent: the first unit missing, DONE or REFUSED; ``depth``: ours."""
        session = self.session or 0
        if self.refused is not None:
            return need(session, ENVELOPE, 0, REFUSED, 0, depth)
        d = self.updater.download
        if d.manifest is None or (d.manifest.seq & 0xFFFF) != self.session:
            return need(session, ENVELOPE, 0, NEEDS, self._partial(ENVELOPE, 0), depth)
        if d.table is None:
            have = self._table_have if self._table is not None else 0
            index = 0
            while have & (1 << index):
                index += 1
            return need(session, TABLE, index, NEEDS, self._partial(TABLE, index), depth)
        missing = d.missing_pages()
        if not missing:
            return need(session, IMAGE, 0, DONE, 0, depth)
        return need(session, IMAGE, missing[0], NEEDS, self._partial(IMAGE, missing[0]), depth)

    def _partial(self, part, index):
        """Fragment bits already held of the unit being assembled, so the parent sends only the rest."""
        return self._have & 0xFF if self._unit == (part, index) else 0
