"""Broadcast: flooding in the MAC's depth-staggered slots, then one copy to each direct child.

A node that hears a new broadcast forwards it in the next slot, where the
routers one hop deeper sample the channel, and repeats it a random 1 to
REPEAT_SPREAD superframes later (SENDS times in all). Routers sample only
their own slot, so a node cannot hear its peers forward and suppression
(Trickle's k) has nothing to count. Forwarders of one depth that cannot hear
each other collide at the children they share (rural, 240 modules: one child
in seven missed every copy), so each node also sends one copy to each of its
direct children at that child's own unicast sample, where senders rarely
meet. A node without children (no downward route) does not forward.
"""

from protocol.compat import const

from firmware.common.mesh.clock import ticks_diff

SENDS = const(2)  # flooded transmissions per node per broadcast
REPEAT_SPREAD = const(3)  # a repeat goes 1..3 superframes after the previous copy
CHILD_COPIES = const(1)  # copies to each direct child, unacknowledged: one is lost in ten at the edge
CHILD_SPREAD = const(3)  # the k-th goes in one of the k-th 3 superframes
JITTER_MS = const(25)  # spread of forwarders' starts inside a slot
REMEMBER = const(8)  # broadcasts kept for duplicate counting


class Broadcast:
    """One broadcast this node is spreading: its counter, sealed bytes and schedule."""

    def __init__(self, counter, frame, at):
        self.counter = counter
        self.frame = frame
        self.at = at  # tick of the next flooded copy
        self.sends_left = SENDS
        self.children = []  # (tick, addr): direct children still to get their own copy, and when

    def due_in(self, now):
        best = max(0, ticks_diff(self.at, now)) if self.sends_left else None
        for at, _ in self.children:
            d = max(0, ticks_diff(at, now))
            if best is None or d < best:
                best = d
        return best


class Flood:
    def __init__(self):
        self.recent = []  # Broadcast, newest last

    def find(self, counter):
        for b in self.recent:
            if b.counter == counter:
                return b
        return None

    def start(self, counter, frame, at):
        b = Broadcast(counter, frame, at)
        self.recent.append(b)
        if len(self.recent) > REMEMBER:
            self.recent.pop(0)
        return b

    def due_in(self, now):
        best = None
        for b in self.recent:
            d = b.due_in(now)
            if d is not None and (best is None or d < best):
                best = d
        return best
