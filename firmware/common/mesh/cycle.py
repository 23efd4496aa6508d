"""Following the network's cycle: the phase of its superframe, and our clock's rate against it.

Every router samples at times set by the network's superframe (mac.py), learnt from its preferred
parent: its beacons and acknowledgements carry the phase they were sent at. Two crystals of
+-20 ppm part by up to 40 ppm, 144 ms an hour, where a wake preamble covers +-3 ms
(mac.WAKE_PREAMBLE_MS). So the network's rate against our clock is learnt and applied between
syncs, as ContikiMAC's phase lock and WirelessHART's time keeping do, and what may still be wrong
(``error_ms``) widens the sender's wake preamble (WiseMAC's guard: rendezvous.guard).

The rate is measured end to end: the network's offset from our ticks, unwrapped, over the whole
span since the first sync (the anchor). The offset a parent shows does not
depend on our own rate, so no correction of ours feeds back into the next measurement (a step-wise
estimate that corrected by the error seen at each sync rang down the 30-hop chain: each module
followed a parent that was itself correcting), and the resolution of a sync (SYNC_ERROR_MS) weighs
less the longer the span. The network's rate is the same whichever parent shows it.
"""

from protocol.compat import const

from firmware.common.mesh.clock import ticks_add, ticks_diff
from firmware.common.mesh.mac import SUPERFRAME_MS

RATE_SHIFT = const(20)  # the rate in units of 2^-20 (0.95 ppm)
# A sync's own error: whole-ms ticks at both ends, the frame's airtime rounded (measured <= 1.4 ms).
SYNC_ERROR_MS = const(2)
UNKNOWN_RATE_PPM = const(40)  # before a rate is learnt: two crystals of +-20 ppm
FLOOR_PPM = const(2)  # a learnt rate still wanders: temperature (a tuning-fork crystal's 0.035 ppm/K^2) and ageing
MIN_SPAN_MS = const(300000)  # 5 min: the rate then is within 2 x SYNC_ERROR_MS / span = 13 ppm, better later
MAX_SPAN_MS = const(21600000)  # 6 h: the anchor moves up so that the rate follows a crystal's temperature
MAX_JITTER_MS = const(60)  # a larger miss is a parent that restarted, not one that moves
MAX_ERROR_MS = const(250)  # beyond: the parent's cycle jumped (it restarted, or ours did): taken, not learnt from
# Beyond this drift since the last sync our next upward frame goes to the parent we follow, whose ACK sets our clock
# (TSCH's keep-alive to its time source, carried by the traffic we have anyway). Syncs otherwise come only from its
# beacons (one an hour when calm, missed when we are off) and its ACKs (one upward frame in as many as the parent set
# holds): in the block, seed 3, a fifth of the second ring had synced once, never learnt a rate, and drifted 100 ms
# an hour beyond any guard, retrying each frame with ever longer preambles. A learnt rate (2 ppm) gets here after
# 1.4 hours, an unknown one (40 ppm) after 5 minutes. Drift only, not how far the parent moved lately (jitter_ms):
# on the 30-hop chain, whose parents move for hours after a cold start, that sent nearly every frame to the
# preferred parent (the busiest relay's load x1.8 when measured in session 7).
SYNC_DUE_MS = const(10)
# Upward attempts unanswered since the last sync after which we doubt our clock (``misses``): the next upward frame
# goes to the parent we follow, and the guard widens with each further miss (rendezvous.doubt, rendezvous.guard).
# A rate learnt in a cold start can be tens of ppm off while its bound says a few: each module of the 30-hop chain
# learnt it from a parent that still drifted at its own crystal's rate or jumped at its own syncs, and the errors
# added up hop by hop (seed 2: modules at depth 20-30 off by 30-55 ppm, their bound 2-5 ppm). Such a module's clock
# left its parent's beyond every guard it believed in; it then never met the parent's sample again, never got the
# ACK that would have set its clock, nor heard a beacon in its slot, and its subtree, which follows it, stayed
# unjoined for hours (docs/benchmarks.md, "Session 9, chain").
DOUBT_AFTER = const(3)
HALF_MS = const(1000)  # SUPERFRAME_MS / 2: offsets wrap into (-1 s, +1 s]


def wrap(ms):
    """A difference of phases, in (-HALF_MS, +HALF_MS]."""
    return (ms + HALF_MS) % SUPERFRAME_MS - HALF_MS


class Cycle:
    def __init__(self):
        self.base = 0  # offset at the last sync: network phase = (ticks + offset) % SUPERFRAME_MS
        self.rate = 0  # the network's clock against ours, in 2^-RATE_SHIFT
        self.drift_ppm = UNKNOWN_RATE_PPM  # how far the rate may still be off (error_ms)
        self.jitter_ms = 0  # how far our parent has moved at a sync lately (error_ms)
        self._at = None  # tick of the last sync
        self._anchor_at = 0  # the sync the rate is measured from
        self._moved = 0  # the offset's unwrapped change since the anchor, ms
        self.misses = 0  # upward attempts unanswered since the last sync (DOUBT_AFTER)

    def offset(self, now):
        """The offset to add to our ticks for the network's phase at tick ``now``."""
        if self._at is None:
            return self.base
        return (self.base + (ticks_diff(now, self._at) * self.rate >> RATE_SHIFT)) % SUPERFRAME_MS

    def phase(self, now):
        return (now + self.offset(now)) % SUPERFRAME_MS

    def synced(self):
        """True once a parent has set our clock."""
        return self._at is not None

    def error_ms(self, now):
        """How far our phase may be from our parent's at tick ``now``: a sync's own error, how far the parent
        moved lately, and the drift since the last sync (WiseMAC's guard: the sender's wake preamble must
        cover it, mac.py)."""
        if self._at is None:
            return SYNC_ERROR_MS
        return SYNC_ERROR_MS + self.jitter_ms + self._drift_ms(now)

    def sync_due(self, now):
        """True if our clock may have drifted so far since the last sync, or so many upward attempts went unanswered
        since (``doubted``), that the next upward frame should fetch another."""
        return self.misses >= DOUBT_AFTER or self._drift_ms(now) > SYNC_DUE_MS

    def doubted(self):
        """How many upward attempts beyond DOUBT_AFTER went unanswered since the last sync: 0 while we trust our clock."""
        return max(0, self.misses - DOUBT_AFTER + 1)

    def drifts_in(self, limit_ms, now):
        """Milliseconds from ``now`` until our clock may have drifted more than ``limit_ms`` since the last sync at
        the rate's bound (0: it may have already); None before the first sync."""
        if self._at is None:
            return None
        seconds = ((limit_ms + 1) * 1000 + self.drift_ppm - 1) // self.drift_ppm  # _drift_ms's whole seconds
        return max(0, seconds * 1000 - ticks_diff(now, self._at))

    def _drift_ms(self, now):
        """The drift since the last sync at the rate's bound."""
        return ticks_diff(now, self._at) // 1000 * self.drift_ppm // 1000

    def sync(self, offset, now):
        """A parent showed the network's offset from our ticks at ``now``."""
        if self._at is not None:
            step = wrap(offset - self.base)  # the offset's change since the last sync
            missed = wrap(offset - self.offset(now))  # how far off our phase had gone
            if abs(missed) >= MAX_ERROR_MS:
                self._anchor_at, self._moved = now, 0  # a jump (a restart): measure anew
            else:
                self._moved += step
                span = ticks_diff(now, self._anchor_at)
                if span >= MIN_SPAN_MS:
                    self.rate = (self._moved << RATE_SHIFT) // span
                    self.drift_ppm = FLOOR_PPM + 2 * SYNC_ERROR_MS * 1000 // (span // 1000)
                    if span >= MAX_SPAN_MS:  # halfway up: the rate keeps its half-span's worth of history
                        self._anchor_at = ticks_add(now, -(span // 2))
                        self._moved //= 2
                # What we missed by beyond a sync's own error and the drift foreseen: our parent moves when its own
                # parent sets its clock (30-hop chain after a cold start: jumps of 20 ms that a rate learnt to 5 ppm
                # did not foresee). It may move as much again: the guard widens at once, and narrows by a quarter
                # a sync while the parent keeps still.
                # (Not when our clock was doubted: what it missed was our own rate's error, which the span now holds.)
                moved = 0 if self.misses >= DOUBT_AFTER else abs(missed) - SYNC_ERROR_MS - self._drift_ms(now)
                self.jitter_ms = min(max(moved, self.jitter_ms * 3 // 4), MAX_JITTER_MS)
        else:
            self._anchor_at, self._moved = now, 0
        self.base, self._at = offset, now
        self.misses = 0
