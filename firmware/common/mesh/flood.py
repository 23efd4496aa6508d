"""Broadcast: flooding in the MAC's depth-staggered slots, and an acknowledged copy to each child.

A node that hears a new broadcast forwards it in the next slot, where the
routers one hop deeper sample the channel, and repeats it in a random one of
the next 2 x REPEAT_SPREAD slots those routers sample (SENDS times in all):
their own, and the second slot that dense routers also sample (mac.py), so
the forwarders a dense router hears part over two slots and three
superframes (rural, 240 modules: a second-ring module hears a median of 15
first-ring forwarders). Routers sample only
their own slot, so a node cannot hear its peers forward and suppression
(Trickle's k) has nothing to count. Forwarders of one depth that cannot hear
each other collide at the children they share (rural, 240 modules: ~26 first-
ring forwarders in one slot, a second-ring module missed every flooded copy in
one broadcast of ten), so the flood is only the fast path: each node also sends
the broadcast to each child that named it its preferred parent (L_PREFERRED on
the child's upward frames), at that child's own unicast sample where senders
rarely meet, acknowledged (L_ACK_REQ) and retried like any unicast. A node that
routes for others floods even when no child has named it yet: a parent learns it
from the child's upward frames, and a 60-module chain 30 minutes after its cold
start had children no parent knew of (flooding only from known preferred parents,
2 of 60 missed a broadcast).
"""

from protocol.compat import const

from firmware.common.mesh.clock import ticks_diff

SENDS = const(2)  # flooded transmissions per node per broadcast
REPEAT_SPREAD = const(3)  # a repeat goes within the 3 superframes after the previous copy
REMEMBER = const(8)  # broadcasts kept for duplicate counting
# A child that names us its preferred parent within this time after a broadcast gets a copy of it
# (Station._repair_copy): the copies that failed through a fade, and a child whose new parent did not know
# it yet, left one module in 1,000 without a broadcast (block and rural, session 8). Longer, a command
# would arrive that the utility no longer means; shorter than a ticks_ms half-period in any case.
REPAIR_MS = const(3 * 3600 * 1000)


class Broadcast:
    """One broadcast this node is spreading: its counter, sealed bytes and schedule."""

    def __init__(self, counter, frame, heard, at, guard):
        self.counter = counter
        self.frame = frame
        self.heard = heard  # tick we got it; None once REPAIR_MS has passed (Station._repair_copy)
        self.at = at  # tick of the next flooded copy
        self.guard = guard  # and its wake preamble's guard (rendezvous.guard)
        self.sends_left = SENDS

    def due_in(self, now):
        return max(0, ticks_diff(self.at, now)) if self.sends_left else None


class Flood:
    def __init__(self):
        self.recent = []  # Broadcast, newest last

    def find(self, counter):
        for b in self.recent:
            if b.counter == counter:
                return b
        return None

    def start(self, counter, frame, heard, at, guard):
        b = Broadcast(counter, frame, heard, at, guard)
        self.recent.append(b)
        if len(self.recent) > REMEMBER:
            self.recent.pop(0)
        return b

    def repairable(self):
        """The newest broadcast if it is still owed to a child that missed it (REPAIR_MS), else None."""
        b = self.recent[-1] if self.recent else None
        return b if b is not None and b.heard is not None else None

    def expire(self, now):
        """Stop repairing broadcasts older than REPAIR_MS (checked at every poll: ticks wrap in 12 days)."""
        for b in self.recent:
            if b.heard is not None and ticks_diff(now, b.heard) >= REPAIR_MS:
                b.heard = None

    def due_in(self, now):
        best = None
        for b in self.recent:
            d = b.due_in(now)
            if d is not None and (best is None or d < best):
                best = d
        return best
