"""Following the network's cycle: the phase of its superframe, and our clock's rate against it.

Every router samples at times set by the network's superframe (mac.py), learnt from the parent
it follows: its beacons and acknowledgements carry the phase they were sent at. Two crystals of
+-20 ppm part by up to 40 ppm, 82 ms over a 34-minute beacon interval, where a wake preamble
covers +-3 ms (mac.WAKE_PREAMBLE_MS) and a broadcast slot 100 ms. So the rate between the two
clocks is learnt from syncs at least MIN_SPAN_MS apart and applied between them, as ContikiMAC's
phase lock and WirelessHART's time keeping do; a parent's clock after ours has learnt it drifts
only by what the crystals change with temperature and age.
"""

from protocol.compat import const

from firmware.common.mesh.clock import ticks_diff
from firmware.common.mesh.mac import SUPERFRAME_MS

RATE_SHIFT = const(20)  # the rate in units of 2^-20 (0.95 ppm)
MIN_SPAN_MS = const(600000)  # 10 min: a timestamp off by its 1 ms resolution moves the rate <= 1.7 ppm
MAX_ERROR_MS = const(250)  # beyond: the parent's cycle jumped (it restarted, or ours did): taken, not learnt from
HALF_MS = const(1000)  # SUPERFRAME_MS / 2: errors wrap into (-1 s, +1 s]


class Cycle:
    def __init__(self):
        self.base = 0  # offset at the last sync: network phase = (ticks + offset) % SUPERFRAME_MS
        self.rate = 0  # the parent's clock against ours, in 2^-RATE_SHIFT
        self._at = None  # tick of the last sync
        self._src = None  # whom we follow: a new parent's crystal is another
        self._anchor_at = 0  # the sync the rate is next measured from, and its offset
        self._anchor_offset = 0

    def offset(self, now):
        """The offset to add to our ticks for the network's phase at tick ``now``."""
        if self._at is None:
            return self.base
        return (self.base + (ticks_diff(now, self._at) * self.rate >> RATE_SHIFT)) % SUPERFRAME_MS

    def phase(self, now):
        return (now + self.offset(now)) % SUPERFRAME_MS

    def sync(self, src, offset, now):
        """Neighbour ``src``, which we follow, showed the network's offset from our ticks at ``now``."""
        if src != self._src or self._at is None:
            self._src, self.rate = src, 0
            self._anchor_at, self._anchor_offset = now, offset
        else:
            span = ticks_diff(now, self._anchor_at)
            if span >= MIN_SPAN_MS:
                predicted = self._anchor_offset + (span * self.rate >> RATE_SHIFT)
                error = (offset - predicted + HALF_MS) % SUPERFRAME_MS - HALF_MS
                if -MAX_ERROR_MS < error < MAX_ERROR_MS:
                    # Half the measured step: on the 30-hop chain each module follows a parent that is itself
                    # correcting, and the whole step made the corrections ring down the chain (broadcast p95
                    # over 10 seeds: 6.4 s without the rate, 8.2 s with the whole step, 7.1 s with half).
                    self.rate += (error << RATE_SHIFT) // span // 2
                self._anchor_at, self._anchor_offset = now, offset
        self.base, self._at = offset, now
