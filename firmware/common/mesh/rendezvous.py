"""Meeting a sleeping router at its sample: how far it may be from where we expect it (the guard).

mac.py starts a frame SAMPLE_LEAD_MS before its receiver's sample; its 11 ms wake preamble covers a
rendezvous error of CLOCK_ERROR_MS either way. The error can be larger: our clock has drifted since
the parent we follow last set it, the receiver's too, and a parent moves when its own parent sets it.
As WiseMAC does, the sender covers what it may be (``guard``): the frame starts that much earlier
and its preamble lasts that much longer on each side (mac.guarded_preamble_ms). A frame to a parent
we do not follow aims at that parent's own phase (``skew``). Every constant here trades a longer
preamble (29 mA of transmit per ms, and the receiver's listening until it ends) against a missed
sample (an attempt, and a retry two seconds later).
"""

from protocol.compat import const
from protocol.frame import CONCENTRATOR

from firmware.common.mesh.clock import ticks_diff
from firmware.common.mesh.control import RANK_INFINITE
from firmware.common.mesh.cycle import MAX_ERROR_MS, wrap
from firmware.common.mesh.mac import CLOCK_ERROR_MS

PEER_ERROR_MS = const(3)  # a hop that does not set our clock drifts from the network on its own (a child, a peer)
WIDEN_MS = const(2)  # an unanswered attempt may have missed the sample: the next guards 2, 4, 8 ms more
RETRY_WIDENINGS = const(2)  # (2 << 2: the third and later attempts guard 8 ms more; wider, congestion fed itself)
MAX_GUARD_MS = const(120)  # the preamble 251 ms at most (7 mAs at +10 dBm); boardhal.SYNC_WAIT_US waits that long
# A doubted rendezvous (``doubt``: our clock, or a frame's round of attempts gone unanswered) widens the guard by
# DOUBT_MS, doubling with each further level up to MAX_GUARD_MS: a preamble of +-123 ms. (Scanning the superframe
# beyond, by +-240 ms aims in turn, was dropped: in the block, modules that doubted after collisions or fades aimed
# away from samples they would have met, data/asleep 39 -> 324 a day on seed 2, and the chain did as well without.)
DOUBT_MS = const(8)
DOUBT_WIDENINGS = const(4)  # 8, 16, 32, 64, 128 (MAX_GUARD_MS)
LATE_MS = const(1)  # a start in the contention window may slip this much: the preamble's end still covers the sample


def guard(cycle, followed, hop, now, attempts=0, level=0):
    """How much further than mac.CLOCK_ERROR_MS the sample of ``hop`` (None: our children's broadcast slot)
    may be from where we expect it at tick ``now``; ``cycle`` is our cycle.Cycle, ``followed`` the address
    of the parent it follows (None without one), ``attempts`` the unanswered ones so far.

    To the parent we follow, our own error since it last set our clock (cycle.Cycle.error_ms: drift, and
    how far it moved at recent syncs). Any other hop (a child, another parent, our children's slot) has
    drifted as long, or moved when its own parent set its clock: twice that, and PEER_ERROR_MS besides.
    An unanswered attempt may have missed the sample, so each widens the guard (WIDEN_MS, doubling).
    (With twice our own error to the parent too, the 30-hop chain had joined 220 of its 240 modules 90
    minutes after a cold start, against 234 so, and the preambles were longer.) At a doubt ``level`` (``doubt``)
    of 1 or more, DOUBT_MS more, doubling with each level up to MAX_GUARD_MS.
    """
    if hop == CONCENTRATOR:
        return 0  # it always listens
    error = cycle.error_ms(now)
    if hop != followed or followed is None:
        error = 2 * error + PEER_ERROR_MS
    g = max(0, error - CLOCK_ERROR_MS)
    if attempts:
        g += WIDEN_MS << min(attempts - 1, RETRY_WIDENINGS)
    if level:
        g += DOUBT_MS << min(level - 1, DOUBT_WIDENINGS)
    return min(g, MAX_GUARD_MS)


def doubt(cycle, up, rounds, attempts, per_round):
    """How much a frame's next attempt doubts where its hop samples (0: not at all; ``guard``): an upward
    frame as much as our clock is doubted (cycle.Cycle.doubted), and any frame whose first round of ``per_round``
    attempts went unanswered one level more with each attempt since (``rounds`` begun, ``attempts`` made in this
    one). Down the 30-hop chain a parent aims at a child's sample with the skew its last ACK showed, and a child that
    follows another parent moves with it: join answers were dropped after their three rounds at hops whose skew was
    tens of ms stale, and their modules asked again an hour later (docs/benchmarks.md, "Session 9, chain")."""
    level = cycle.doubted() if up else 0
    if rounds > 1:
        level = max(level, (rounds - 2) * per_round + attempts + 1)
    return level


def late(at, now):
    """True if a frame meant to start at tick ``at`` (its receiver's sample ahead) would start too late at
    tick ``now`` for its wake preamble to cover that sample."""
    return ticks_diff(now, at) > LATE_MS


def skew(rank, shown, ours):
    """Where a neighbour's phase stands against ours (routing.Neighbour.skew), from the network's offset its
    beacon or ACK showed (``shown``) and ours (``ours``), or None. Each module follows its preferred parent,
    so the members of a parent set follow other paths from the concentrator, whose phases part with depth
    (30-hop chain half an hour after a cold start: 20-35 ms at depth 15). Without a route (``rank``
    infinite) it follows nobody, and a phase far from ours is one it has not taken from the network yet (a
    module back from a reboot, before its parent's first beacon): either says nothing of later."""
    s = wrap(shown - ours)
    return None if rank == RANK_INFINITE or abs(s) >= MAX_ERROR_MS else s
