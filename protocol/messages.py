"""Application messages: the plaintext payload of a DATA or BCAST frame.

The first byte names the message; the rest is a fixed struct layout (and, for
two messages, a variable tail). Registers are cumulative integer pulse counts:
a lost message loses no energy, because the next one carries the totals again,
and REGISTERS carries every tariff register of a channel at least once a day.

Up (module to concentrator): HOURLY, REGISTERS, EVENT, DIAG, ACK, OTA_STATUS.
Down (concentrator to module, or broadcast): TIME_SYNC, CONFIG_CHUNK, SET_LIMIT,
RELAY, GROUP_CMD, BACKFILL_REQ, SET_GROUPS.
"""

import struct

from protocol.compat import const
from protocol.errors import ProtocolError

CHANNELS = const(3)  # meters per module
TARIFFS = const(4)  # time-of-use tariff registers per channel
DELTA_UNKNOWN = const(0xFFFF)  # an hourly delta that was not measured or did not fit

# Event codes (EVENT.code)
EV_MAGNET_START = const(1)
EV_MAGNET_END = const(2)
EV_COVER_OPEN = const(3)
EV_COVER_CLOSED = const(4)
EV_BATTERY_LOW = const(5)
EV_POWER_RESTART = const(6)
EV_CLOCK_SET = const(7)
EV_LIMIT_EXCEEDED = const(8)
EV_RELAY_SWITCHED = const(9)
EV_CONFIG_REFUSED = const(10)
EV_LEAK = const(11)
EV_FW_UPDATED = const(12)
EV_BROADCAST_REFUSED = const(13)  # value: the message type a broadcast may not carry
EV_CLOCK_LIMITED = const(14)  # value: the step (s) a broadcast asked for beyond the slew limit

# Event flag bits in HOURLY.flags: which events happened since the last report
FLAG_MAGNET = const(0x0001)
FLAG_COVER = const(0x0002)
FLAG_BATTERY_LOW = const(0x0004)
FLAG_RESTART = const(0x0008)
FLAG_CLOCK_SET = const(0x0010)
FLAG_LIMIT = const(0x0020)
FLAG_RELAY_OPEN = const(0x0040)
FLAG_LEAK = const(0x0080)
FLAG_CLOCK_UNSET = const(0x0100)  # no time sync yet: the hour stamp is the module's guess
FLAG_FLASH_FAULT = const(0x0200)  # a flash write failed: registers held in RAM, the hour may lack its archive

# RELAY.action
RELAY_OPEN = const(0)  # disconnect
RELAY_CLOSE = const(1)  # reconnect
RELAY_AUTO = const(2)  # follow the load limits

# OTA_STATUS.state: where a module stands in an update (docs/ota.md)
OTA_LOADING = const(0)  # asking for pages
OTA_DONE = const(1)  # holds every page; installs once its children have theirs
OTA_REFUSED = const(2)  # signature, class, sequence or battery: it will not take this update
OTA_INSTALLED = const(3)  # runs the new image and confirmed it after the self-test
OTA_FAILED = const(4)  # the image did not unpack or did not confirm: back on the previous one

# ACK.status
ST_OK = const(0)
ST_UNKNOWN_COMMAND = const(1)
ST_BAD_VALUE = const(2)
ST_REFUSED = const(3)  # valid, but not allowed now (e.g. config refused, old one kept)
ST_BUSY = const(4)


class Message:
    """Base of every message: TYPE byte, then FORMAT (without the type byte) over FIELDS."""

    TYPE = 0
    FORMAT = ""
    FIELDS = ()
    GROUPS = {}  # field name -> how many struct items it spans (a tuple)
    TAIL = None  # name of a variable-length bytes field after the fixed part
    TAIL_MAX = 0

    def __init__(self, *values, **named):
        fields = self.FIELDS + ((self.TAIL,) if self.TAIL else ())
        if len(values) > len(fields):
            raise TypeError("too many values for %s" % type(self).__name__)
        for name, value in zip(fields, values):
            setattr(self, name, value)
        for name, value in named.items():
            if name not in fields:
                raise TypeError("%s has no field %s" % (type(self).__name__, name))
            setattr(self, name, value)
        for name in fields[len(values):]:
            if not hasattr(self, name):
                raise TypeError("%s needs %s" % (type(self).__name__, name))

    def values(self):
        return tuple(getattr(self, f) for f in self.FIELDS)

    def encode(self):
        flat = []
        for v in self.values():
            if isinstance(v, (tuple, list)):
                flat.extend(v)
            else:
                flat.append(v)
        try:
            head = struct.pack("<B" + self.FORMAT, self.TYPE, *flat)
        except (ValueError, OverflowError, TypeError, struct.error) as e:
            raise ProtocolError("cannot encode %s: %s" % (type(self).__name__, e))
        if not self.TAIL:
            return head
        tail = bytes(getattr(self, self.TAIL))
        if len(tail) > self.TAIL_MAX:
            raise ProtocolError("%s.%s longer than %d" % (type(self).__name__, self.TAIL, self.TAIL_MAX))
        return head + tail

    @classmethod
    def decode(cls, buf):
        size = struct.calcsize("<B" + cls.FORMAT)
        n = len(buf)
        if n < size or (n > size and not cls.TAIL) or n > size + cls.TAIL_MAX:
            raise ProtocolError("%s must be %d bytes, got %d" % (cls.__name__, size, n))
        flat = struct.unpack_from("<B" + cls.FORMAT, buf, 0)[1:]
        values = []
        pos = 0
        for name in cls.FIELDS:
            width = cls.GROUPS.get(name, 0)
            if width:
                values.append(tuple(flat[pos:pos + width]))
                pos += width
            else:
                values.append(flat[pos])
                pos += 1
        if cls.TAIL:
            values.append(bytes(buf[size:]))
        msg = cls(*values)
        msg.validate()
        return msg

    def validate(self):
        """Raise ProtocolError for field values the layout can hold but the meaning cannot."""

    def __eq__(self, other):
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in sorted(self.__dict__.items())))


# ---- up ---------------------------------------------------------------------


class Hourly(Message):
    """Registers at the start of hour ``hour`` (hours since 1970-01-01 UTC).

    ``totals``: cumulative pulses per channel. ``deltas``: pulses in the two hours
    before, per channel (hour-1 then hour-2), so the concentrator can rebuild up
    to two lost reports. ``battery``: volts = 2.0 + battery * 0.02.
    ``tariff``: active tariff (1..4) in the low nibble, configured-channel mask above.
    """

    TYPE = 0x01
    FORMAT = "IHBB3I6H"
    FIELDS = ("hour", "flags", "battery", "tariff", "totals", "deltas")
    GROUPS = {"totals": CHANNELS, "deltas": 2 * CHANNELS}

    def validate(self):
        t = self.tariff & 0x0F
        if t < 1 or t > TARIFFS:
            raise ProtocolError("active tariff %d out of 1..%d" % (t, TARIFFS))

    def channel_mask(self):
        return self.tariff >> 4

    def delta(self, channel, hours_back):
        """Pulses in hour (hour - hours_back), hours_back 1 or 2; None if unknown."""
        d = self.deltas[(hours_back - 1) * CHANNELS + channel]
        return None if d == DELTA_UNKNOWN else d


class Registers(Message):
    """Every register of one channel: tariffs 1..4 and the penalty register.

    The channel's total is their sum; sent at least daily, and on request.
    """

    TYPE = 0x02
    FORMAT = "IB5I"
    FIELDS = ("hour", "channel", "registers")
    GROUPS = {"registers": TARIFFS + 1}

    def validate(self):
        if self.channel >= CHANNELS:
            raise ProtocolError("channel %d out of range" % self.channel)

    def total(self):
        return sum(self.registers)


class Event(Message):
    """One archived event: unix ``time``, ``code`` (EV_*), ``channel`` (0xFF: module), ``value``."""

    TYPE = 0x03
    FORMAT = "IBBi"
    FIELDS = ("time", "code", "channel", "value")

    def validate(self):
        if not 1 <= self.code <= EV_CLOCK_LIMITED:
            raise ProtocolError("unknown event code %d" % self.code)


class Diag(Message):
    """Self-test and diagnostics: uptime, restarts, battery, radio counters, parent link."""

    TYPE = 0x04
    FORMAT = "IHHHHHHbB"
    FIELDS = ("uptime_s", "restarts", "battery_mv", "tx", "rx", "retries", "parent", "rssi", "hops")


class Ack(Message):
    """Answer to a command: its ``seq``, a ``status`` (ST_*) and a status-specific ``detail``."""

    TYPE = 0x05
    FORMAT = "HBB"
    FIELDS = ("seq", "status", "detail")


class OtaStatus(Message):
    """A module's progress in update ``session`` (the update's seq, low 16 bits): OTA_* and pages missing."""

    TYPE = 0x06
    FORMAT = "HBH"
    FIELDS = ("session", "state", "missing")

    def validate(self):
        if self.state > OTA_FAILED:
            raise ProtocolError("update state %d" % self.state)


# ---- down -------------------------------------------------------------------


class TimeSync(Message):
    """Network time: unix seconds and milliseconds at the moment of sending."""

    TYPE = 0x10
    FORMAT = "HIH"
    FIELDS = ("seq", "unix", "ms")

    def validate(self):
        if self.ms > 999:
            raise ProtocolError("milliseconds %d > 999" % self.ms)


class ConfigChunk(Message):
    """One piece of a configuration blob (tariff calendar, channel set-up).

    ``kind`` says which blob, ``blob_id`` tells versions apart, ``offset`` and
    ``total`` place the piece. The receiver applies a blob only when whole and valid.
    """

    TYPE = 0x11
    FORMAT = "HBHHH"
    FIELDS = ("seq", "kind", "blob_id", "offset", "total")
    TAIL = "data"
    TAIL_MAX = 29  # a frame's 39 payload bytes less the 10 of the fixed part

    def validate(self):
        if self.offset + len(self.data) > self.total:
            raise ProtocolError("chunk runs past the blob's end")


class SetLimit(Message):
    """A load limit in pulses per hour for ``channel`` and ``tariff`` (0: all tariffs).

    ``source`` 0 is the supplier, 1 the customer; the stricter limit wins. 0 clears.
    """

    TYPE = 0x12
    FORMAT = "HBBBI"
    FIELDS = ("seq", "channel", "tariff", "source", "limit")

    def validate(self):
        if self.channel >= CHANNELS or self.tariff > TARIFFS or self.source > 1:
            raise ProtocolError("limit for channel %d tariff %d source %d" % (self.channel, self.tariff, self.source))


class Relay(Message):
    """Switch the relay: RELAY_OPEN, RELAY_CLOSE or RELAY_AUTO, with a reason code."""

    TYPE = 0x13
    FORMAT = "HBB"
    FIELDS = ("seq", "action", "reason")

    def validate(self):
        if self.action > RELAY_AUTO:
            raise ProtocolError("relay action %d" % self.action)


class GroupCmd(Message):
    """Ripple control: ``action`` 1 sheds, 0 restores group ``group`` for ``duration_s`` (0: until restored)."""

    TYPE = 0x14
    FORMAT = "HHBI"
    FIELDS = ("seq", "group", "action", "duration_s")

    def validate(self):
        if self.action > 1:
            raise ProtocolError("group action %d" % self.action)


class BackfillReq(Message):
    """Ask a module to resend ``count`` hourly reports from its archive, starting at ``from_hour``."""

    TYPE = 0x15
    FORMAT = "HIH"
    FIELDS = ("seq", "from_hour", "count")

    def validate(self):
        if self.count == 0 or self.count > 45 * 24:
            raise ProtocolError("backfill of %d hours" % self.count)


class SetGroups(Message):
    """Ripple-control groups this module belongs to: up to 8 little-endian u16 ids."""

    TYPE = 0x16
    FORMAT = "H"
    FIELDS = ("seq",)
    TAIL = "groups"
    TAIL_MAX = 16

    def validate(self):
        if len(self.groups) % 2:
            raise ProtocolError("group list of odd length")

    def group_ids(self):
        return [self.groups[i] | (self.groups[i + 1] << 8) for i in range(0, len(self.groups), 2)]


class Tagged(Message):
    """A broadcast (GROUP_CMD or TIME_SYNC) with its uTESLA tag for ``interval`` (protocol/tesla.py)."""

    TYPE = 0x17
    FORMAT = "I8s"
    FIELDS = ("interval", "tag")
    TAIL = "payload"
    TAIL_MAX = 26  # a frame's 39 payload bytes less the 13 of the fixed part

    def validate(self):
        if not self.payload or self.payload[0] not in (GroupCmd.TYPE, TimeSync.TYPE):
            raise ProtocolError("only GROUP_CMD and TIME_SYNC are broadcast with a tag")


class Disclose(Message):
    """The uTESLA key of ``interval``, broadcast once no module may take broadcasts tagged with it."""

    TYPE = 0x18
    FORMAT = "I16s"
    FIELDS = ("interval", "key")


class SetAnchor(Message):
    """A module's end of a uTESLA chain (sealed under its own key): key ``key`` of ``interval``, chain from ``start``."""

    TYPE = 0x19
    FORMAT = "HII16s"
    FIELDS = ("seq", "start", "interval", "key")


MESSAGES = (Hourly, Registers, Event, Diag, Ack, OtaStatus, TimeSync, ConfigChunk, SetLimit, Relay, GroupCmd,
            BackfillReq, SetGroups, Tagged, Disclose, SetAnchor)
_BY_TYPE = {m.TYPE: m for m in MESSAGES}


def decode(buf):
    """Decode one application message; raise ProtocolError for anything else."""
    if not buf:
        raise ProtocolError("empty message")
    cls = _BY_TYPE.get(buf[0])
    if cls is None:
        raise ProtocolError("unknown message type 0x%02x" % buf[0])
    return cls.decode(buf)
