"""Building calendar blobs (the layout is in docs/firmware.md, the parser in calendar.py).

Head-ends, tests and the simulator use this; the module itself only parses.
"""

import struct

from firmware.d100fc.calendar import HEADER, MAGIC, RULE, SEASON, SPECIAL, SWITCH, VERSION


def encode(seasons, weeks, days, specials=(), activation=0, offset=0, shift=0,
           dst_start=(0, 0, 0, 0), dst_end=(0, 0, 0, 0)):
    """Build a calendar blob.

    ``seasons``: [(month, day, week_id)]; ``weeks``: {week_id: 7 day ids, Monday first};
    ``days``: {day_id: [(minute, tariff)]}; ``specials``: [(year or 0, month, day, day_id)];
    ``offset``/``shift`` in minutes; DST rules (month, week 1..5, weekday 0..6, minute of standard time).
    """
    out = bytearray(struct.pack(HEADER, MAGIC, VERSION, len(seasons), len(weeks), len(days), len(specials), 0,
                                activation, offset, shift))
    out += struct.pack(RULE, *dst_start) + struct.pack(RULE, *dst_end)
    for s in seasons:
        out += struct.pack(SEASON, *s)
    for week_id in sorted(weeks):
        out += bytes([week_id]) + bytes(weeks[week_id])
    for day_id in sorted(days):
        out += bytes([day_id, len(days[day_id])])
        for minute, tariff in days[day_id]:
            out += struct.pack(SWITCH, minute, tariff)
    for x in specials:
        out += struct.pack(SPECIAL, *x)
    return bytes(out)
