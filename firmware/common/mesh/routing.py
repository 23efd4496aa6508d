"""Upward routing: neighbour table, link quality learnt from traffic, parent set and rank.

Link quality is an EWMA of the share of transmissions that were acknowledged,
seeded from a beacon's RSSI; nothing is probed (Contiki-NG's 90 s probing
alone would cost 960 frames a day). Rank is the path cost in ETX/128 as in
RPL/MRHOF (RFC 6550, 6719); the preferred parent changes only when another is
better by HYSTERESIS. Frames go round-robin over a parent set: every neighbour
whose path cost is within SLACK of ours, which spreads relaying over the
first ring around the concentrator instead of draining one battery. Loops are
avoided by choosing only parents of lower rank that do not name us as their
parent, detected on the data path (a frame to relay arriving from one of our
parents), and cut by the hop limit.
"""

from protocol.compat import const
from protocol.frame import MAX_HOPS

from firmware.common.mesh.clock import ticks_add, ticks_diff
from firmware.common.mesh.control import ETX_ONE, RANK_INFINITE

SENSITIVITY_DBM = const(-104)  # CC1101 at 38.4 kBaud
GOOD_MARGIN_DB = const(12)  # a link this far above sensitivity starts as perfect
Q_ONE = const(256)  # link quality scale: share of attempts acknowledged * 256
Q_MIN_PARENT = const(64)  # ETX 4: MRHOF's max link metric 512
DEAD_AFTER = const(8)  # failures in a row (beyond one frame's 5 attempts) that write a link off
HYSTERESIS = const(192)  # RFC 6719 PARENT_SWITCH_THRESHOLD: 1.5 ETX
SIGNIFICANT = const(512)  # rpl-lite's RPL_SIGNIFICANT_CHANGE_THRESHOLD: 4 ETX of rank is news, less waits
SLACK = const(120)  # parent set: path cost within 0.94 ETX of the best (< ETX_ONE keeps it loop-free)
MAX_NEIGHBOURS = const(24)
HOLD_MS = const(8000)  # detached: four Trickle Imin for our poisoned rank to reach our descendants
# A neighbour unheard for this long is no parent: five Imax (trickle.py, 68 min). A router hears a
# neighbour's beacon only in its own depth's slot, which gets every other one of them (the rest go a hop
# deeper): one in 68-136 minutes when calm. At two hours (chosen when Imax was 34 minutes) the parents
# we sent nothing to expired between two beacons, the round robin narrowed to the preferred parent, and
# the ACKs kept it alone fresh (30-hop chain seed 6: a house's 8 routers left with one parent each for
# hours, one relay carried 3,500 frames a day, 113 uA).
TTL_MS = const(20480000)
# The preferred parent is given up after two hours unheard, as every neighbour was before: a leaf with 18
# parents sends to each about once in 18 hours, so a dead relay's children kept it as their preferred
# parent (their broadcast copies and slot) for the long TTL (block, 24 modules, fault death).
PREFERRED_TTL_MS = const(7200000)


def _from_rssi(rssi):
    """First guess of link quality from signal strength, before any traffic."""
    margin = rssi - SENSITIVITY_DBM
    return max(16, min(Q_ONE - 16, Q_MIN_PARENT + margin * (Q_ONE - Q_MIN_PARENT) // GOOD_MARGIN_DB))


class Neighbour:
    def __init__(self, addr):
        self.addr = addr
        self.rank = RANK_INFINITE
        self.depth = MAX_HOPS
        self.parent = 0xFFFF
        self.version = -1
        self.rssi = -127
        self.quality = 0  # 0 until first heard
        self.etx = ETX_ONE  # link cost, kept with quality (set_quality)
        self.heard = 0  # tick of the last frame from it
        self.failures = 0  # unacknowledged transmissions in a row
        self.counter = -1  # its highest frame counter seen: older control frames are replays
        self.skew = None  # its phase less ours, ms, as its last beacon or acknowledgement showed it

    def set_quality(self, quality):
        self.quality = quality
        self.etx = ETX_ONE * Q_ONE // max(quality, 1)

    def cost(self):
        return self.rank + self.etx


class Routing:
    def __init__(self, me):
        self.me = me
        self.table = {}
        self.preferred = None  # Neighbour
        self.parents = []  # Neighbour, best first
        self.rank = RANK_INFINITE
        self.depth = MAX_HOPS
        self.version = -1  # the concentrator's boot generation we follow
        self.anchor = False  # the concentrator: rank 0 for good
        self._next = 0
        self._ceiling = RANK_INFINITE  # parents must rank below this (lowered while detached)
        self._hold_until = None
        self._told_detached = True  # what the neighbourhood last heard from us
        self._told_rank = RANK_INFINITE
        self._told_depth = MAX_HOPS

    def heard(self, addr, rssi, now, rank):
        """Note a frame from ``addr`` advertising ``rank``; its entry, or None if not worth a slot.

        A full table admits only a possible parent (ranked below us), in place of the worst entry.
        """
        n = self.table.get(addr)
        if n is None:
            if len(self.table) >= MAX_NEIGHBOURS and (rank >= self.rank or not self._evict(now)):
                return None
            n = self.table[addr] = Neighbour(addr)
            n.rssi = rssi
            n.set_quality(_from_rssi(rssi))
        else:
            n.rssi = (3 * n.rssi + rssi) // 4
            guess = _from_rssi(n.rssi)
            if n.quality < guess:
                # Heard well again: a link written off after failures earns another chance.
                n.set_quality(n.quality + (guess - n.quality) // 4)
        n.heard = now
        return n

    def _evict(self, now):
        worst = None
        worst_cost = 0
        preferred, parents = self.preferred, self.parents
        for n in self.table.values():
            if n is preferred or n in parents:
                continue
            cost = n.rank + n.etx  # cost(), inline: a full table runs this for every stranger heard
            if worst is None or cost > worst_cost:
                worst, worst_cost = n, cost
        if worst is None:
            return False
        del self.table[worst.addr]
        return True

    def link_result(self, addr, ok, final=True):
        """One transmission to ``addr`` was (ok) or was not acknowledged.

        DEAD_AFTER failures in a row write the link off at once (a dead or moved
        parent); hearing the neighbour well again brings it back (``heard``).
        A failure that is not ``final`` lowers the quality (ETX must stay honest:
        a link that looked perfect drew a chain's whole subtree onto one marginal
        hop) but does not count towards the write-off.
        """
        n = self.table.get(addr)
        if n is None:
            return
        if ok:
            n.failures = 0
        elif final:
            n.failures += 1
        if n.failures >= DEAD_AFTER:
            n.set_quality(Q_MIN_PARENT // 4)
        else:
            n.set_quality(n.quality - n.quality // 8 + (Q_ONE // 8 if ok else 0))

    def forget(self, addr):
        n = self.table.pop(addr, None)
        if n is not None and n is self.preferred:
            self.preferred = None

    def _usable(self, n, now, q_min=Q_MIN_PARENT):
        return (n.rank < self._ceiling and n.version == self.version and n.parent != self.me
                and n.depth < MAX_HOPS and n.quality >= q_min and self._fresh(n, now))

    def _fresh(self, n, now):
        """Heard lately enough to be a parent: TTL_MS, PREFERRED_TTL_MS for the preferred one."""
        return ticks_diff(now, n.heard) < (PREFERRED_TTL_MS if n is self.preferred else TTL_MS)

    def _best(self, now, q_min):
        """The neighbour of least path cost among those usable as a parent, and its cost."""
        best = None
        best_cost = RANK_INFINITE
        ceiling, version, me = self._ceiling, self.version, self.me
        for n in self.table.values():
            cost = n.rank + n.etx
            if (cost < best_cost and n.rank < ceiling and n.version == version and n.parent != me
                    and n.depth < MAX_HOPS and n.quality >= q_min and self._fresh(n, now)):
                best, best_cost = n, cost
        return best, best_cost

    def select(self, now):
        """Recompute preferred parent, parent set, rank and depth.

        True when the neighbourhood must hear of it at once (a Trickle reset):
        attached, detached, a new depth, or a rank SIGNIFICANT away from the one
        last told. A new preferred parent alone waits for the next regular beacon,
        as in Contiki-NG's rpl-lite: each reset costs ~10 beacons that every
        module sampling the slot receives, and in the rural scenario parent
        switches and one-hop rank drifts made most of the day's beacons (a leaf
        heard 8,400 a day and spent 45 uA on them: 6.2 years). A loop the stale
        rank allows is cut on the data path (``Station._relay``).
        """
        if self.anchor:
            return False
        if self.preferred is None and self._hold_until is not None and ticks_diff(now, self._hold_until) >= 0:
            self._hold_until = None
            self._ceiling = RANK_INFINITE
        best, best_cost = self._best(now, Q_MIN_PARENT)
        if best is None:
            # Only weak links left: a lossy parent beats cutting off the whole subtree.
            best, best_cost = self._best(now, Q_MIN_PARENT // 2)
        if best is None and self.preferred is None:
            # Detached, with only links written off (DEAD_AFTER) that were heard again since: hearing raises
            # their quality only to the signal's guess, which for a link near sensitivity stays below the
            # bar above, and a module whose only parent had faded for a while stayed out for good.
            best, best_cost = self._best(now, Q_MIN_PARENT // 4 + 1)
        pref = self.preferred
        # Hysteresis keeps the preferred parent against a slightly cheaper one, but not against one
        # fewer hops away: depth sets the broadcast slot a node listens in, and a tree only ever
        # grows deeper otherwise.
        if (pref is not None and best is not None and self._usable(pref, now) and best.depth >= pref.depth
                and pref.cost() <= best_cost + HYSTERESIS):
            best, best_cost = pref, pref.cost()
        if best is None:
            if self.preferred is not None:
                # Detached: for HOLD_MS accept only parents ranked below our last rank,
                # which cannot be our own descendants still advertising the old tree.
                self._ceiling = self.rank
                self._hold_until = ticks_add(now, HOLD_MS)
            self.preferred, self.parents = None, []
            self.rank, self.depth = RANK_INFINITE, MAX_HOPS
        else:
            self.preferred = best
            self.rank = min(best_cost, RANK_INFINITE - 1)
            self.depth = best.depth + 1
            limit = self.rank + SLACK
            self.parents = [best]
            # Never a parent deeper than the preferred one: it forwards broadcasts in a slot we do not
            # sample, and frames through a sibling's subtree made paths of 31 hops on the chain.
            for n in self.table.values():
                if (n is not best and n.rank < self.rank and n.rank + n.etx <= limit and n.depth <= best.depth
                        and self._usable(n, now)):
                    self.parents.append(n)
        # A new depth is news too: it moves the slot our children must sample.
        news = ((self.preferred is None) != self._told_detached or self.depth != self._told_depth
                or abs(self.rank - self._told_rank) >= SIGNIFICANT)
        if news:
            self._told_detached, self._told_rank, self._told_depth = self.preferred is None, self.rank, self.depth
        return news

    def next_hop(self):
        """The parent for the next upward frame: round robin over the parent set."""
        if not self.parents:
            return None
        self._next = (self._next + 1) % len(self.parents)
        return self.parents[self._next].addr

    def matters(self, n):
        """Whether news from ``n`` can change our parents: it is one, or could become one."""
        return n in self.parents or n.rank + n.etx < self.rank + SLACK or n.parent == self.me

    def detour(self, avoid, hops=0):
        """The neighbour of least path cost outside the parent set that could still carry an upward
        frame (ranked below us, not routing through us, heard within our generation; ``avoid`` is
        the hop that failed last); None if there is none. The parent set holds no parent deeper
        than the preferred one (the broadcast slot; paths of 31 hops on the chain), which does not
        matter for one frame that failed a round: a first-ring router hears only the concentrator's
        beacons, and its detours are children that route through a better-placed first-ring peer.
        A frame that has come ``hops`` hops takes no detour too deep for it to reach the concentrator
        within MAX_HOPS: the 30-hop chain's deepest modules have one hop to spare, and their frames that
        detoured twice were refused at the hop limit near the concentrator, after rounds of retries."""
        best = None
        best_cost = RANK_INFINITE
        for n in self.table.values():
            cost = n.rank + n.etx
            if cost < best_cost and n.addr != avoid and hops + n.depth <= MAX_HOPS and self._may_detour(n):
                best, best_cost = n, cost
        return None if best is None else best.addr

    def is_detour(self, addr):
        n = self.table.get(addr)
        return n is not None and self._may_detour(n)

    def _may_detour(self, n):
        return (n not in self.parents and n.rank < self.rank and n.version == self.version and n.parent != self.me
                and n.depth < MAX_HOPS and n.quality >= Q_MIN_PARENT)

    def has_alternative(self, addr):
        """Whether a parent other than ``addr`` could carry an upward frame."""
        return len(self.parents) > (1 if self.is_parent(addr) else 0)

    def is_parent(self, addr):
        for n in self.parents:
            if n.addr == addr:
                return True
        return False
