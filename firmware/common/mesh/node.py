"""A module's mesh station: joins, picks parents, routes for others, carries its own reports.

Wiring (the board's main, or the simulator)::

    node = MeshNode(hal, addr, net_id, net_key, module_key)
    module = Module(hal, config, node.uplink)
    node.on_downlink = module.on_downlink     # commands under the module key; replies go back up
    node.on_broadcast = module.on_broadcast   # broadcasts under the network key; never answered

Join: on its first parent the node sends JOIN (sealed under its module key)
to the concentrator, which answers under the same key; a node that is not
answered asks again with doubling pauses. Beacons of other networks or with a
wrong tag are never heard, so only provisioned modules join or route.
"""

import struct

from protocol.compat import const
from protocol.errors import ProtocolError
from protocol.frame import CONCENTRATOR, F_ACK_REQ, F_BACKFILL, MAX_HOPS, T_BEACON, T_DATA, T_JOIN

from firmware.common.mesh import control
from firmware.common.mesh.clock import ticks_add, ticks_diff
from firmware.common.mesh.seen import KeptWindow
from firmware.common.mesh.station import Station

JOIN_RETRY_MS = const(180000)  # first pause before asking again (a cold start's answers take minutes); doubles
JOIN_RETRY_MAX_MS = const(3600000)
REPORT_SPREAD_MS = const(600000)  # routine reports leave within 10 minutes of being made
JOIN_SPREAD_MS = const(60000)  # a whole level attaches within seconds of one beacon: spread the requests
# With no upward frame to fetch a sync (cycle.SYNC_DUE_MS), a module whose clock may have drifted this far since
# the last one asks its preferred parent for one: an empty beacon to it, acknowledged, the ACK carrying its phase
# (RPL's unicast DIS, TSCH's keep-alive to its time source). A guard this wide still meets the parent
# (rendezvous.guard, about 85 ms of preamble). An unknown rate (two crystals' 40 ppm) drifts this far 16 minutes
# after the first sync: modules that joined, then waited up to an hour for their first report, had drifted past
# every guard by then (rural seed 3: 10 of 240 an hour after a cold start, lost for hours). A learnt rate (2 ppm)
# takes 5 hours: reports come first. Drift only, not how far the parent moved lately, as cycle.SYNC_DUE_MS.
SYNC_ASK_DRIFT_MS = const(38)
SYNC_ASK_GAP_MS = const(600000)  # an unanswered ask is not repeated for 10 minutes (its own retries come first)


class Uplink:
    """What the module's firmware sees of the mesh: ``send`` an application message upward."""

    def __init__(self, node):
        self._node = node

    def send(self, payload, urgent=False, backfill=False):
        """Queue ``payload`` (<= 39 bytes) for the concentrator; False if the queue is full."""
        return self._node.send_up(payload, urgent, backfill)

    def stats(self):
        """Radio counters and the route to the concentrator, for the module's DIAG report."""
        n = self._node
        parent = n.routing.preferred
        return {"tx": n.sent + n.relayed, "rx": n.received, "retries": n.retries,
                "parent": 0xFFFF if parent is None else parent.addr,
                "rssi": -127 if parent is None else max(-127, min(127, int(parent.rssi))),
                "hops": n.routing.depth}


class MeshNode(Station):
    def __init__(self, hal, addr, net_id, net_key, module_key, seed=0):
        Station.__init__(self, hal, addr, net_id, net_key, seed)
        self.module_key = bytes(module_key)
        self.uplink = Uplink(self)
        self.on_downlink = None  # payload -> reply bytes or None
        # Apart, because a broadcast proves only the network key, which every module holds:
        # the module trusts it less (docs/mesh.md, "What a broadcast may do").
        self.on_broadcast = None  # payload -> None
        self.joined = False
        self.join_count = 0  # answers received: rejoins after a concentrator restart count too
        self._join_at = None  # tick of the next join request, None when none is due
        self._join_pause = JOIN_RETRY_MS
        self._down_window = KeptWindow(hal.flash_path() + "/mesh_seen", 1, 0, hal.ticks_ms())
        self._held = []  # (tick, frame): routine reports waiting out their spread
        self._sync_asked = None  # tick of our last sync ask (SYNC_ASK_GAP_MS)

    def send_up(self, payload, urgent=False, backfill=False):
        """Seal and queue a message; routine ones wait a random spread first.

        Every module closes its hour at hh:00; without the spread 240 reports
        would meet in the first ring within a second.
        """
        if len(self.queue) + len(self._held) >= self.queue_max:
            return False
        kind = T_DATA | F_ACK_REQ | (F_BACKFILL if backfill else 0)
        frame = self._seal(kind, CONCENTRATOR, payload, self.module_key)
        if urgent:
            return self.enqueue(frame, True, True)
        now = self.hal.ticks_ms()
        self._held.append((ticks_add(now, self.rand.below(REPORT_SPREAD_MS)), frame))
        return True

    # ---- routing ------------------------------------------------------------

    def _beacon_heard(self, n, phase, buf, now):
        r = self.routing
        newer = r.version < 0 or (n.rank != control.RANK_INFINITE and 0 < (n.version - r.version) & 0xFF < 128)
        if newer:
            # The concentrator restarted: follow its new generation, forget the old tree.
            r.version = n.version
            r.preferred, r.parents = None, []
            self.routes = {}
            self.joined = False
        elif n.version == r.version and n.rank >= r.rank:
            self.trickle.consistent()
        changed = (newer or r.matters(n)) and r.select(now) or newer
        if n is r.preferred:  # (perhaps chosen from this beacon: its phase is the one we sample at from now on)
            self._sync(phase, buf, now)
        self._solicited(n, now)
        if changed:
            self._routing_changed(now)

    def _routing_changed(self, now):
        Station._routing_changed(self, now)
        r = self.routing
        if r.preferred is not None and not self.joined and self._join_at is None:
            wait = self.rand.below(JOIN_SPREAD_MS)
            for at, _ in self._held:
                # A report waits to go up (the boot's on a cold start): the concentrator answers it as a request
                # (root.py), and our own request follows only if that answer has not come a round trip after it.
                wait = max(wait, ticks_diff(at, now) + JOIN_RETRY_MS)
            self._join_at = ticks_add(now, wait)
            self._join_pause = JOIN_RETRY_MS

    # ---- join ---------------------------------------------------------------

    def _timers(self, now):
        held = self._held
        i = 0
        while i < len(held):
            if ticks_diff(now, held[i][0]) >= 0:
                self.enqueue(held.pop(i)[1], True)
            else:
                i += 1
        if self._join_at is not None and ticks_diff(now, self._join_at) >= 0:
            if self.joined:
                self._join_at = None
                return
            r = self.routing
            if r.preferred is not None:
                payload = struct.pack(control.JOIN_FMT, r.preferred.addr, r.rank, min(r.depth, MAX_HOPS))
                self.enqueue(self._seal(T_JOIN | F_ACK_REQ, CONCENTRATOR, payload, self.module_key), True, True)
            self._join_at = ticks_add(now, self._join_pause + self.rand.below(self._join_pause))
            self._join_pause = min(self._join_pause * 2, JOIN_RETRY_MAX_MS)
        if self._sync_ask_in(now) == 0:
            self._sync_asked = now
            frame = self._seal(T_BEACON | F_ACK_REQ, self.routing.preferred.addr, b"", self.net_key)
            self.enqueue(frame, True, True)

    def _sync_ask_in(self, now):
        """Milliseconds until we ask our preferred parent for a sync (SYNC_ASK_DRIFT_MS); None while no ask is
        due: no parent, or an upward frame in hand or queued (it goes to the preferred parent: _first_hop)."""
        if self.routing.preferred is None or self.job is not None and self.job.up:
            return None
        for job in self.queue:
            if job.up:
                return None
        # A doubted clock (cycle.Cycle.doubted: upward attempts went unanswered since the last sync) asks at once.
        d = 0 if self.cycle.doubted() else self.cycle.drifts_in(SYNC_ASK_DRIFT_MS, now)
        if d is not None and self._sync_asked is not None:
            d = max(d, SYNC_ASK_GAP_MS - ticks_diff(now, self._sync_asked))
        return d

    def _timer_due_in(self, now):
        best = self._sync_ask_in(now)
        for at in [h[0] for h in self._held] + ([self._join_at] if self._join_at is not None else []):
            d = max(0, ticks_diff(at, now))
            if best is None or d < best:
                best = d
        return best

    # ---- frames for this module ---------------------------------------------

    def _open_own(self, buf, f):
        if f.src != CONCENTRATOR:
            return None
        return self._open(buf, self.module_key)

    def _fresh(self, fr):
        try:
            self._down_window.accept(fr.src, fr.counter, self.hal.ticks_ms())
        except ProtocolError:
            return False
        return True

    def _deliver_own(self, fr, f, now):
        if fr.kind == T_JOIN:
            try:
                status, version = control.unpack(control.ANSWER_FMT, control.ANSWER_LEN, fr.payload)
            except ProtocolError:
                return
            if status == control.JOIN_OK and version == self.routing.version & 0xFF:
                self.joined = True
                self.join_count += 1
                self._join_at = None
        elif fr.kind == T_DATA:
            self._deliver_app(fr.payload)

    def _deliver_broadcast(self, payload, now):
        # Not answered: 240 answers at once would jam the first ring; the
        # concentrator learns the outcome from the next reports.
        if self.on_broadcast is not None:
            self.on_broadcast(payload)

    def _deliver_app(self, payload):
        """Hand a unicast command to the module; its reply goes back up at once."""
        if self.on_downlink is None:
            return
        answer = self.on_downlink(payload)
        if answer:
            self.send_up(answer, urgent=True)
