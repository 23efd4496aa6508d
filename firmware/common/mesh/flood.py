"""Broadcast by flooding in the MAC's depth-staggered slots.

A node that hears a new broadcast forwards it in the next slot, where the
routers one hop deeper sample the channel, and repeats it one superframe
later (SENDS times in all), so a child that lost the first copy to a
collision gets another. Routers sample only their own slot, so a node cannot
hear its peers forward and suppression (Trickle's k) has nothing to count;
every node sends SENDS times, a few frames a day at 4 broadcasts a day.
"""

from protocol.compat import const

from firmware.common.mesh.clock import ticks_add, ticks_diff

SENDS = const(2)  # transmissions per node per broadcast
JITTER_MS = const(25)  # spread of forwarders' starts inside a slot
REMEMBER = const(8)  # broadcasts kept for duplicate counting


class Broadcast:
    """One broadcast this node is spreading: its counter, sealed bytes and schedule."""

    def __init__(self, counter, frame, at):
        self.counter = counter
        self.frame = frame
        self.at = at
        self.sends_left = SENDS


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
            if b.sends_left:
                d = max(0, ticks_diff(b.at, now))
                if best is None or d < best:
                    best = d
        return best

    def due(self, now):
        """Broadcasts whose send time has come (the caller sends or suppresses, then reschedules)."""
        return [b for b in self.recent if b.sends_left and ticks_diff(now, b.at) >= 0]

    @staticmethod
    def reschedule(b, now, delay):
        b.sends_left -= 1
        b.at = ticks_add(now, delay)
