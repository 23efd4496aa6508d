"""Tariff registers of the three channels, and the hour bookkeeping behind HOURLY.

Each channel has TARIFFS time-of-use registers and one penalty register, all
integer pulse counts (names: protocol.obis.code). Pulses are booked as they
are drained: into the tariff in force, except that pulses beyond the channel's
contracted amount within the current hour go to the penalty register. Booking
only ever adds, so every register is monotonic and the total is their sum.
"""

import struct

from protocol.compat import const

CHANNELS = const(3)
TARIFFS = const(4)
PENALTY = const(4)  # index of the penalty register after the four tariff registers
SLOTS = const(5)
UNKNOWN = const(-1)  # an hour delta that was not measured (the clock jumped or the module was off)
# per channel: 5 registers, pulses so far this hour, deltas of the two previous hours
CHANNEL_STATE = "<5IIii"


class Registers:
    def __init__(self, contracts):
        self.value = [[0] * SLOTS for _ in range(CHANNELS)]
        self.contract = list(contracts) + [0] * (CHANNELS - len(contracts))  # pulses per hour; 0 = none
        self.this_hour = [0] * CHANNELS
        self.prev = [[UNKNOWN, UNKNOWN] for _ in range(CHANNELS)]  # pulses in hour-1, hour-2

    def total(self, ch):
        return sum(self.value[ch])

    def book(self, ch, pulses, tariff):
        """Add ``pulses`` of channel ``ch`` under ``tariff`` (1..4), the excess over the contract to penalty."""
        if not pulses:
            return
        regs = self.value[ch]
        limit = self.contract[ch]
        within = pulses
        if limit:
            within = min(pulses, max(0, limit - self.this_hour[ch]))
            regs[PENALTY] += pulses - within
        regs[tariff - 1] += within
        self.this_hour[ch] += pulses

    def close_hour(self, contiguous):
        """Start a new hour; ``contiguous`` False when hours were skipped (their deltas are unknown)."""
        for ch in range(CHANNELS):
            p = self.prev[ch]
            if contiguous:
                p[1] = p[0]
                p[0] = self.this_hour[ch]
            else:
                p[0] = p[1] = UNKNOWN
            self.this_hour[ch] = 0

    def pack(self):
        out = b""
        for ch in range(CHANNELS):
            out += struct.pack(CHANNEL_STATE, *(self.value[ch] + [self.this_hour[ch]] + self.prev[ch]))
        return out

    def unpack(self, buf, pos):
        size = struct.calcsize(CHANNEL_STATE)
        for ch in range(CHANNELS):
            v = struct.unpack_from(CHANNEL_STATE, buf, pos + ch * size)
            self.value[ch] = list(v[:SLOTS])
            self.this_hour[ch] = v[SLOTS]
            self.prev[ch] = [v[SLOTS + 1], v[SLOTS + 2]]
        return pos + CHANNELS * size
