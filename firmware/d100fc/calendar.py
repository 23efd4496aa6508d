"""Time-of-use calendar, modelled on the DLMS activity calendar (interface class 20).

A season (from a month and day on) selects a week profile; a week profile
gives a day profile per weekday; a day profile is a list of switch times
(minutes after local midnight) with the tariff that starts there; a special
day (a date, every year or one year) replaces the week's day profile. Local
time is UTC plus a standard offset plus, between two transition rules, a
daylight-saving shift: the offset rules travel inside the calendar.

The binary blob is laid out in docs/firmware.md ("Calendar blob"); ``parse``
refuses anything inconsistent with a ConfigError; calendar_blob.encode builds
one from a plain description (for head-ends, tests and the simulator).
"""

import struct

from firmware.d100fc import civil
from firmware.d100fc.errors import E_FORMAT, E_OVERLAP, E_RANGE, E_REFERENCE, E_TARIFF, ConfigError
from protocol.compat import const

MAGIC = const(0x4354)  # "TC" little-endian
VERSION = const(1)
TARIFFS = const(4)
MINUTES_PER_DAY = const(1440)
MAX_OFFSET_MIN = const(840)  # UTC+14:00, the furthest zone
MAX_SHIFT_MIN = const(120)  # no daylight saving anywhere moves clocks by more than two hours
HEADER = "<HBBBBBBIhh"  # magic, version, seasons, weeks, days, specials, reserved, activation, offset, shift
RULE = "<BBBH"  # month, week (1..4, 5 = last), weekday (0 = Monday), minute of local standard time
SEASON = "<BBB"  # month, day, week id
SPECIAL = "<HBBB"  # year (0: every year), month, day, day id
SWITCH = "<HB"  # minute, tariff
# The calendar of a single-tariff meter, tariff 1 all day every day:
# calendar_blob.encode([(1, 1, 1)], {1: bytes([1] * 7)}, {1: [(0, 1)]})
FLAT = b"TC\x01\x01\x01\x01" + bytes(20) + b"\x01\x01\x01" + b"\x01" * 8 + b"\x01\x01\x00\x00\x01"


class Calendar:
    """A parsed, validated calendar. ``blob`` keeps the bytes it came from."""

    def __init__(self, blob):
        self.blob = bytes(blob)
        self.activation = 0
        self._parse()

    # ---- parsing ----------------------------------------------------------------
    def _parse(self):
        b = self.blob
        hsize = struct.calcsize(HEADER)
        rsize = struct.calcsize(RULE)
        if len(b) < hsize + 2 * rsize:
            raise ConfigError(E_FORMAT, "calendar shorter than its header")
        magic, version, ns, nw, nd, nx, _, self.activation, self.offset, self.shift = struct.unpack_from(HEADER, b, 0)
        if magic != MAGIC or version != VERSION:
            raise ConfigError(E_FORMAT, "not a version %d calendar" % VERSION)
        if not -MAX_OFFSET_MIN <= self.offset <= MAX_OFFSET_MIN or not -MAX_SHIFT_MIN <= self.shift <= MAX_SHIFT_MIN:
            raise ConfigError(E_RANGE, "offset %d or shift %d out of range" % (self.offset, self.shift))
        pos = hsize
        self.dst_start = struct.unpack_from(RULE, b, pos)
        self.dst_end = struct.unpack_from(RULE, b, pos + rsize)
        pos += 2 * rsize
        if self.shift:
            for month, week, wday, minute in (self.dst_start, self.dst_end):
                if not (1 <= month <= 12 and 1 <= week <= 5 and wday <= 6 and minute < MINUTES_PER_DAY):
                    raise ConfigError(E_RANGE, "daylight-saving rule out of range")
        if ns == 0 or nw == 0 or nd == 0:
            raise ConfigError(E_FORMAT, "a calendar needs a season, a week and a day profile")
        self.seasons = []  # (month * 32 + day, week id), strictly increasing
        for _ in range(ns):
            month, day, week_id = struct.unpack_from(SEASON, b, pos)
            pos += 3
            _check_date(2000, month, day)  # a leap year: 29 February may start a season
            key = month * 32 + day
            if self.seasons and key <= self.seasons[-1][0]:
                raise ConfigError(E_OVERLAP, "seasons out of order")
            self.seasons.append((key, week_id))
        self.weeks = {}
        for _ in range(nw):
            if pos + 8 > len(b):
                raise ConfigError(E_FORMAT, "calendar truncated in week profiles")
            if b[pos] in self.weeks:
                raise ConfigError(E_OVERLAP, "week profile %d defined twice" % b[pos])
            self.weeks[b[pos]] = b[pos + 1:pos + 8]
            pos += 8
        self.days = {}
        for _ in range(nd):
            pos = self._parse_day(b, pos)
        self.specials = {}  # (year, month * 32 + day) -> day id
        for _ in range(nx):
            if pos + 5 > len(b):
                raise ConfigError(E_FORMAT, "calendar truncated in special days")
            year, month, day, day_id = struct.unpack_from(SPECIAL, b, pos)
            pos += 5
            _check_date(year or 2000, month, day)
            key = (year, month * 32 + day)
            if key in self.specials:
                raise ConfigError(E_OVERLAP, "special day %d-%d-%d twice" % (year, month, day))
            self.specials[key] = day_id
        if pos != len(b):
            raise ConfigError(E_FORMAT, "calendar has %d bytes past its end" % (len(b) - pos))
        for _, week_id in self.seasons:
            if week_id not in self.weeks:
                raise ConfigError(E_REFERENCE, "season names undefined week %d" % week_id)
        for ids in list(self.weeks.values()) + [bytes(self.specials.values())]:
            for day_id in ids:
                if day_id not in self.days:
                    raise ConfigError(E_REFERENCE, "undefined day profile %d" % day_id)

    def _parse_day(self, b, pos):
        if pos + 2 > len(b):
            raise ConfigError(E_FORMAT, "calendar truncated in day profiles")
        day_id, n = b[pos], b[pos + 1]
        pos += 2
        if day_id in self.days:
            raise ConfigError(E_OVERLAP, "day profile %d defined twice" % day_id)
        if n == 0 or pos + 3 * n > len(b):
            raise ConfigError(E_FORMAT, "day profile %d has no switches or is truncated" % day_id)
        switches = []
        for _ in range(n):
            minute, tariff = struct.unpack_from(SWITCH, b, pos)
            pos += 3
            if not 1 <= tariff <= TARIFFS:
                raise ConfigError(E_TARIFF, "tariff %d in day profile %d" % (tariff, day_id))
            if minute >= MINUTES_PER_DAY:
                raise ConfigError(E_RANGE, "switch at minute %d" % minute)
            if switches and minute <= switches[-1][0]:
                raise ConfigError(E_OVERLAP, "switch times of day profile %d overlap" % day_id)
            if not switches and minute != 0:
                raise ConfigError(E_RANGE, "day profile %d does not start at midnight" % day_id)
            switches.append((minute, tariff))
        self.days[day_id] = switches
        return pos

    # ---- local time -------------------------------------------------------------
    def _transition(self, year, rule):
        month, week, wday, minute = rule
        return (civil.nth_weekday(year, month, week, wday) * civil.DAY + minute * 60) - self.offset * 60

    def _dst_window(self, utc):
        """(start, end) UTC seconds of daylight saving in the year of ``utc``, or None."""
        if not self.shift:
            return None
        year = civil.civil_from_days((utc + self.offset * 60) // civil.DAY)[0]
        return self._transition(year, self.dst_start), self._transition(year, self.dst_end), year

    def offset_at(self, utc):
        """Seconds local time is ahead of UTC at ``utc``."""
        w = self._dst_window(utc)
        if w is None:
            return self.offset * 60
        start, end, _ = w
        in_dst = start <= utc < end if start < end else not (end <= utc < start)
        return (self.offset + (self.shift if in_dst else 0)) * 60

    def _next_transition(self, utc):
        w = self._dst_window(utc)
        if w is None:
            return None
        year = w[2]
        best = None
        for t in (w[0], w[1], self._transition(year + 1, self.dst_start), self._transition(year + 1, self.dst_end)):
            if t > utc and (best is None or t < best):
                best = t
        return best

    # ---- tariffs ----------------------------------------------------------------
    def _day_profile(self, z):
        y, m, d = civil.civil_from_days(z)
        key = m * 32 + d
        day_id = self.specials.get((y, key))
        if day_id is None:
            day_id = self.specials.get((0, key))
        if day_id is None:
            week_id = self.seasons[-1][1]  # before the first season: last year's last season goes on
            for start, wid in self.seasons:
                if start <= key:
                    week_id = wid
            day_id = self.weeks[week_id][civil.weekday(z)]
        return self.days[day_id]

    def tariff_at(self, utc):
        """The tariff (1..4) in force at ``utc``."""
        local = utc + self.offset_at(utc)
        minute = (local % civil.DAY) // 60
        tariff = 1
        for start, t in self._day_profile(local // civil.DAY):
            if start <= minute:
                tariff = t
        return tariff

    def next_change(self, utc):
        """UTC second after ``utc`` when the tariff may next change (a switch, midnight or a clock change)."""
        off = self.offset_at(utc)
        local = utc + off
        z = local // civil.DAY
        minute = (local % civil.DAY) // 60
        at = (z + 1) * civil.DAY  # local midnight: a new day profile
        for start, _ in self._day_profile(z):
            if start > minute:
                at = z * civil.DAY + start * 60
                break
        at -= off
        dst = self._next_transition(utc)
        return dst if dst is not None and dst < at else at


def _check_date(year, month, day):
    if not (1 <= month <= 12 and 1 <= day <= civil.month_length(year, month)):
        raise ConfigError(E_RANGE, "no date %d-%d" % (month, day))
