"""What every mesh station does, module or concentrator.

Receives and dispatches frames, acknowledges unicasts hop by hop, relays them
(upward over the parent set, downward along routes learnt from upward
traffic), retries and reroutes, floods broadcasts, sends Trickle beacons and
keeps the duty cycle. ``node.MeshNode`` (a module) and ``root.MeshRoot`` (the
concentrator) add what differs. A host drives it with ``poll()`` whenever the
radio has a frame or ``wakeup_in_ms()`` has passed; nothing here blocks.
"""

import struct

from protocol.compat import const
from protocol.errors import ProtocolError
from protocol.frame import (BROADCAST, CONCENTRATOR, F_ACK_REQ, HOPS_MASK, L_ACK_REQ, L_DENSE, L_ELSEWHERE, L_HAD,
                            L_MORE, L_PREFERRED, MAX_HOPS, O_HOPS, O_LINK_DST, T_ACK, T_BCAST, T_BEACON, T_JOIN, T_OTA,
                            Frame, ReplayWindow, open_frame, parse_header, relay_header, seal_frame, set_link_flags)

from firmware.common.mesh import control, rendezvous
from firmware.common.mesh.clock import Rand, ticks_add, ticks_diff
from firmware.common.mesh.counter import FrameCounter
from firmware.common.mesh.cycle import Cycle, wrap
from firmware.common.mesh.duty import DutyCycle
from firmware.common.mesh.flood import REPEAT_SPREAD, Flood
from firmware.common.mesh.mac import (ACK_DELAY_MS, ACK_TIMEOUT_MS, BROADCAST_CHANNEL, CCA_RETRIES, CONTENTION_MS,
                                      DENSE_FORWARDERS, MAX_ATTEMPTS, SECOND_SLOT, SLOT_MS, SUPERFRAME_MS,
                                      WAKE_PREAMBLE_MS, airtime_ms, broadcast_depths, guarded_preamble_ms,
                                      slot_phase, slot_wait, unicast_channel, unicast_phase, unicast_wait)
from firmware.common.mesh.routing import Routing
from firmware.common.mesh.trickle import Trickle

MAX_QUEUE = const(24)  # frames waiting for their hop: an hour's bursts of a first-ring relay
MAX_ROUTES = const(512)  # downward routes: every module of a 240-module network, with room
RECENT = const(32)  # unicasts remembered to acknowledge a retransmission without relaying it twice
RETRY_SPREAD_DOUBLINGS = const(2)  # a retry waits 0-1, then 0-3 samples more: <= 6 s a hop, two senders part
ROOT_RETRY_MS = const(40)  # a frame and its ACK to the always-listening concentrator
LOOKAHEAD = const(16)  # queued downward frames compared for the soonest hop
BURST_GAP_MS = const(3)  # silence after which woken receivers go back to sleep
BURST_TAIL_MS = const(50)  # one more exchange (frame 14 ms, ACK_DELAY_MS, ACK 8 ms) must fit before the slot ends
SAME_HOP_ATTEMPTS = const(3)  # attempts at one parent before an upward frame turns to the next
# A join answer's attempts per hop (other frames: MAX_ATTEMPTS). On a cold start a relay's sample is
# contested by its parent's answers and its children's requests, hidden from each other; an answer
# given up costs its module a new request after 3-6 minutes and a new round trip (30-hop chain: two
# answers in five were dropped after five attempts). The retries wait in the queue (Job.not_before).
ANSWER_ATTEMPTS = const(7)
# A neighbour without a route (its beacon's rank is infinite: RPL's DIS) gets one beacon from us, and at
# most one per this gap, not a Trickle reset: in the rural scenario every detached module made its ~200
# neighbours restart at Imin, ~10 beacons each that every module sampling their slots received
# (367 resets a day on seed 1; a leaf heard 6,300 beacons a day).
ANSWER_GAP_MS = const(30000)
# Without a route we ask at least this often (Trickle capped at it), as rpl-lite sends a DIS every 30 s:
# with one answer per ask, a module at the edge of its only neighbour's range needs many asks.
ASK_MS = const(32000)
FORMER_BEACONS = const(3)  # beacons to our former children's slot after our depth changed (_beacon_slot)
MAX_FOLLOWERS = const(64)  # children that chose us as preferred parent: each gets broadcasts acknowledged (root.py: more)
# A follower whose ACK said its preferred parent is another now (L_ELSEWHERE) gets its next copy this much
# later, as a backup after the rush: a child that changed parents named none of the others its preferred
# until its next upward frame, up to an hour, and such stale followers got 285 of a broadcast's 411 copies
# (rural seed 1); dropping them outright left children without the broadcast (reach 0.9969 -> 0.9927). The
# backup still comes within the 35 s a tagged broadcast acts after it (protocol/tesla.py, DISCLOSE_AFTER):
# at 60 s (until session 10) it came after the key for the children that had changed parents and missed the
# flood, and rural reached 0.9973 of its modules within 40 s (seeds 1-7), at 20 s 0.9990.
BACKUP_DELAY_MS = const(20000)
# What a follower's last copy found (Station.followers), which sets when its next copy goes. Every copy goes at
# once, beside the flood; those to children the flood missed last time first, then those to children it reached
# (L_HAD on their ACK), behind the frames queued: a parent's one radio takes the copies one at a time, and the
# concentrator has tens of followers (64-68 in the block), most of whom the flood reaches. Until session 10 the
# latter waited 6 s, for the flood's chance, so that the others had the one channel; on the children's own
# channels (mac.unicast_channel) the held-back copies were the tail (rural seeds 1-5, p95 11.57 -> ~10 s).
FRESH = const(0)  # it did not have the broadcast yet, or it is new: at the head of the queue
HAD = const(1)  # the flood had reached it (L_HAD): at the tail
ELSEWHERE = const(2)  # its preferred parent is another (L_ELSEWHERE): BACKUP_DELAY_MS
# A frame whose attempts all failed waits out the fade and gets another round: a first-ring relay's five
# attempts to the concentrator go within half a second, all inside one slow fade (rural seed 1: 51 of 91
# reports dropped were given up so).
PAUSE_MS = const(60000)
PAUSE_SPREAD_MS = const(60000)  # 1-2 minutes, random: relays that failed together do not come back together
ROUNDS = const(3)  # rounds of MAX_ATTEMPTS a frame gets before it is given up
MAX_PAUSED = const(8)  # frames waiting out a fade; beyond, a failed frame is given up at once
JUMP_MS = const(10)  # a sync that moves our phase further than this is told to our followers at once (_sync)


def _per_round(job):
    """Attempts a frame gets per round: ANSWER_ATTEMPTS for a join answer, MAX_ATTEMPTS for any other."""
    return ANSWER_ATTEMPTS if not job.up and job.frame[3] & 0x0F == T_JOIN else MAX_ATTEMPTS


class Job:
    """One unicast frame crossing one hop: sent, acknowledged or retried."""

    def __init__(self, frame, up, child=None):
        self.frame = frame  # bytearray, sealed; link fields are rewritten per attempt
        self.up = up
        self.src, self.dst, self.counter = struct.unpack_from("<HHI", frame, 9)
        self.child = child  # a broadcast's copy goes to this one child, not along a route
        self.repair = False  # that copy is a repair (Station._repair_copy): its ACK tells nothing of the flood
        self.hop = None
        self.at = 0  # tick of the next step
        # A routed downward frame waits out a retry's backoff in the queue (this tick), not as the job in
        # hand: the concentrator sends to tens of children, and one unanswered child held every other
        # answer for up to 6 s (30-hop chain, cold start: join answers waited minutes at the root).
        self.not_before = None
        self.attempts = 0
        self.rounds = 1  # rounds of attempts begun (ROUNDS)
        self.busy = 0  # channel-busy deferrals of the current attempt
        self.guard = 0  # ms the attempt starts early and its preamble lasts longer on each side (rendezvous.guard)
        self.aimed = False  # the attempt is aimed at the hop's sample (not the concentrator, not a burst)
        self.waiting = False  # sent, waiting for the acknowledgement


class Station:
    def __init__(self, hal, addr, net_id, net_key, seed=0):
        self.hal = hal
        self.addr = addr
        self.net_id = net_id
        self.net_key = bytes(net_key)
        now = hal.ticks_ms()
        self.rand = Rand(seed * 65599 + addr + 1)
        self.counter = FrameCounter(hal.flash_path() + "/mesh_counter")
        self.duty = DutyCycle(now)
        self.routing = Routing(addr)
        self.trickle = Trickle(self.rand)
        self.flood = Flood()
        self.bcast_window = ReplayWindow(max_sources=4)
        self.routes = {}  # destination -> next hop downward
        # children whose upward frames name us their preferred parent (L_PREFERRED) -> what the last
        # broadcast's copy found (FRESH, HAD, ELSEWHERE)
        self.followers = {}
        self.followers_max = MAX_FOLLOWERS
        self._dense = set()  # followers whose upward frames say they hear many forwarders (L_DENSE)
        self._told = None  # the preferred parent that acknowledged our L_PREFERRED: it knows we follow it
        self.recent = []  # (src, counter) of unicasts taken lately
        self.queue = []  # Job waiting for the radio
        self.queue_max = MAX_QUEUE
        self.job = None  # Job being sent
        self.paused = []  # Job waiting out a fade before its next round; .at is when it comes back
        self._burst_until = now  # a frame just went through: its receiver is still awake
        self._burst_hop = None
        self._burst_more = False  # the frame it acknowledged said another follows (L_MORE): it stays awake
        self._beacon_at = None  # a beacon Trickle asked for waits for our children's slot
        self._beacon_guard = 0  # its guard (_guard)
        self._answered_at = None  # when we last answered a neighbour without a route (ANSWER_GAP_MS)
        self._listen_until = None  # the receiver stays on until then (listen_for)
        self._children_slot = None  # the slot our children sample: while detached, they must hear it
        self._turn = False  # every other beacon goes to another slot (_beacon_slot)
        self._former_slot = None  # the slot our children sampled before our depth changed
        self._former_left = 0  # beacons still owed to that slot
        self.cycle = Cycle()  # the network's superframe phase, followed from our preferred parent
        self.sent = self.relayed = self.dropped = self.retries = self.duty_refused = self.acked = 0
        self.queue_full = 0  # frames refused for lack of queue space (a relay then does not acknowledge)
        self.received = 0  # frames heard, whoever they were for: the module's DIAG reports it
        self.ota = None  # firmware/common/ota/meshota.MeshOta, when the host carries updates
        hal.radio_listen()

    # ---- the host's interface ----------------------------------------------

    def poll(self):
        """Handle every received frame, then every timer that is due."""
        hal = self.hal
        while True:
            buf = hal.radio_receive()
            if buf is None:
                break
            self.received += 1
            self._receive(buf, hal.radio_rssi(), hal.ticks_ms())
        # The time is read again before each step that may send: an acknowledgement above, or a frame of an
        # earlier step, held the radio (radio_send returns when it is on the air), and a frame aimed at a
        # sample or sealed with our phase must know when it really goes.
        now = hal.ticks_ms()
        if self.trickle.poll(now):
            self._beacon_soon(now)
        at = self._beacon_at
        if at is not None and ticks_diff(now, at) >= 0:
            self._beacon_at = None
            now = hal.ticks_ms()
            if rendezvous.late(at, now) or not self._send_beacon(now):  # late or busy: the slot of the next superframe
                self._beacon_at = ticks_add(at, SUPERFRAME_MS)
        for b in self.flood.recent:
            self._spread(b, hal.ticks_ms())
        now = hal.ticks_ms()
        self.flood.expire(now)
        self._resume(now)
        self._timers(now)
        if self.ota is not None:
            self.ota.poll(now)
        self._run_jobs(hal.ticks_ms())

    def wakeup_in_ms(self):
        """Milliseconds until ``poll`` must run again without a radio event; None: only for frames."""
        now = self.hal.ticks_ms()
        best = None
        beacon = None if self._beacon_at is None else max(0, ticks_diff(self._beacon_at, now))
        listening = None if self._listen_until is None else max(0, ticks_diff(self._listen_until, now))
        for d in (self.trickle.due_in(now), beacon, listening, self.flood.due_in(now), self._timer_due_in(now),
                  self._job_due_in(now), self._paused_due_in(now),
                  None if self.ota is None else self.ota.due_in(now)):
            if d is not None and (best is None or d < best):
                best = d
        return best

    # ---- hooks for node and root ------------------------------------------

    def _timers(self, now):
        """Station-specific timers (the node's join retry)."""

    def _timer_due_in(self, now):
        return None

    # ---- time ---------------------------------------------------------------

    def net_phase(self, now):
        return self.cycle.phase(now)

    def dense(self):
        """True if we hear DENSE_FORWARDERS or more routers one level up: their flood into our slot mostly
        collides, and we sample a second broadcast slot (mac.broadcast_depths)."""
        depth = self.routing.depth - 1
        n = 0
        for m in self.routing.table.values():
            if m.depth == depth and m.rank != control.RANK_INFINITE:
                n += 1
        return n >= DENSE_FORWARDERS

    def sample_phases(self):
        """Where in the superframe our receiver samples, and on which channel (mac.py): (phase, channel) pairs,
        unicasts at our own phase on our own channel, beacons and broadcasts in our depth's slot and a dense
        router's second slot on the broadcast channel. Empty while we have no parent or wait for an answer
        without a wake preamble (listen_for): the receiver then listens all the time (listen_channel)."""
        routing = self.routing
        now = self.hal.ticks_ms()
        if self._listen_until is not None:
            if ticks_diff(self._listen_until, now) > 0:
                return ()
            self._listen_until = None
        if routing.preferred is None:
            return ()
        phases = [(unicast_phase(self.addr), unicast_channel(self.addr))]
        for depth in broadcast_depths(routing.depth, self.dense()):
            phases.append((slot_phase(depth), BROADCAST_CHANNEL))
        return tuple(phases)

    def listen_channel(self):
        """The channel our receiver stays on while it listens all the time (sample_phases empty): our own for the
        concentrator and an answer awaited without a wake preamble (both come as unicasts to us), the broadcast
        channel while we search for a parent (beacons)."""
        if self.routing.anchor or self._listen_until is not None:
            return unicast_channel(self.addr)
        return BROADCAST_CHANNEL

    def listen_for(self, now, ms):
        """Keep the receiver on for ``ms`` from ``now`` (sample_phases): an answer comes without a wake
        preamble (an OTA module's burst after its child's NEED, firmware/common/ota/meshota.py)."""
        until = ticks_add(now, ms)
        if self._listen_until is None or ticks_diff(until, self._listen_until) > 0:
            self._listen_until = until

    def _offset_shown(self, phase, frame, now):
        """The network's offset from our ticks as a frame sealed at ``phase`` shows it (beacon, ACK)."""
        return (phase + airtime_ms(frame, 0) - now) % SUPERFRAME_MS

    def _note_skew(self, n, phase, frame, now):
        """Where neighbour ``n``'s phase stands against ours: a frame to it aims at its own sample."""
        n.skew = rendezvous.skew(n.rank, self._offset_shown(phase, frame, now), self.cycle.offset(now))

    def _phase_of(self, hop, now):
        """Our phase as ``hop`` keeps it: ours, moved by its skew where we know it (_note_skew)."""
        n = self.routing.table.get(hop)
        phase = self.net_phase(now)
        return phase if n is None or n.skew is None else phase + n.skew

    def _sync(self, phase, frame, now):
        """Align the cycle with a frame sealed at ``phase`` by our preferred parent. Only it: each module's
        phase then comes down one path from the concentrator, and a child is off its parent only by its own
        drift (taking it from any parent, the 30-hop chain's parents disagreed by up to 100 ms in its first
        hours, each having drifted its own way since its last sync)."""
        cycle = self.cycle
        before = cycle.phase(now) if cycle.synced() else None
        cycle.sync(self._offset_shown(phase, frame, now), now)
        if before is None or not self.followers or self._beacon_at is not None:
            return
        jump = wrap(cycle.phase(now) - before)
        if abs(jump) > JUMP_MS:
            # Our followers still keep our old phase: one beacon in their slot where they sample it, carrying the
            # new one, so that they move with us (and theirs with them) instead of losing us until their next
            # upward frame goes unanswered (cycle.DOUBT_AFTER). Its guard holds the jump as our error (cycle.py).
            self._beacon_guard = guard = self._guard(None, now)
            self._beacon_at = ticks_add(now, slot_wait(self.routing.depth + 1, self.net_phase(now) - jump + guard)
                                        + self.rand.below(CONTENTION_MS))

    # ---- sending ------------------------------------------------------------

    def _seal(self, kind, dst, payload, key):
        return seal_frame(Frame(self.net_id, kind, self.addr, dst, self.counter.take(), payload), key)

    def _transmit(self, frame, now, cca=True, preamble_ms=None):
        """Send one frame now if the duty cycle and the channel allow; True if it went. ``preamble_ms``: its
        wake preamble (mac.guarded_preamble_ms), by default the shortest."""
        ms = airtime_ms(frame, preamble_ms)
        if not self.duty.fits(now, ms):
            self.duty_refused += 1
            return False
        if not self.hal.radio_send(frame, cca, preamble_ms):
            return False
        self.duty.book(now, ms)
        self.sent += 1
        return True

    def _spread(self, b, now):
        """Send the flooded copy of broadcast ``b`` if it is due."""
        if b.sends_left and ticks_diff(now, b.at) >= 0:
            # A repeat goes at a random one of our children's next 2 x REPEAT_SPREAD broadcast slots (their
            # own and the dense ones' second, mac.SECOND_SLOT), so that forwarders hidden from each other
            # that collided in this slot part; a copy the channel or the budget refused tries the next slot.
            k = 0
            preamble = guarded_preamble_ms(b.frame, b.guard)
            if not rendezvous.late(b.at, now) and self._transmit(b.frame, now, True, preamble):
                b.sends_left -= 1
                k = self.rand.below(2 * REPEAT_SPREAD)
            b.guard = self._guard(None, now)
            b.at = self._flood_slot(now, b.guard, k)

    def _start_broadcast(self, counter, frame, now):
        """Spread a broadcast that is new to us: flooded in our children's slot, and an acknowledged
        copy to each child whose preferred parent we are, at its own sample (flood.py)."""
        guard = self._guard(None, now)
        # Our first flooded copy goes at a random one of the children's next 2 x REPEAT_SPREAD broadcast slots
        # when they hear many forwarders (L_DENSE), as a repeat does: rural's ~30 first-ring forwarders all
        # aimed at the second ring's next slot, where carrier sense let one or two go, and the rest met again
        # in the same slot of each superframe after (seed 1: 70 refused against 9 sent in the first two
        # seconds). Rural seeds 1-5 p95 22.4 -> 19.7 s, block seeds 1-12 7.4 -> 6.2 s (docs/benchmarks.md,
        # session 9). Elsewhere (the concentrator's children, the 30-hop chain) the first copy goes in the
        # children's next slot.
        k = self.rand.below(2 * REPEAT_SPREAD) if self._children_dense() else 0
        b = self.flood.start(counter, frame, now, self._flood_slot(now, guard, k), guard)
        for child, state in self.followers.items():
            copy = self._copy(frame, child)
            if state == ELSEWHERE:
                job = Job(copy, False, child)
                job.at = ticks_add(now, BACKUP_DELAY_MS)
                self.paused.append(job)  # bounded by followers_max
            else:  # retried like any unicast; the queue aims at its sample
                self.enqueue(copy, False, state == FRESH, child)
        if not self.routes:
            b.sends_left = 0  # nobody routes through us: every deeper node has a parent that forwards
        return b

    @staticmethod
    def _copy(frame, child):
        """A broadcast's copy to one child, which acknowledges it (L_ACK_REQ)."""
        copy = bytearray(frame)
        struct.pack_into("<H", copy, O_LINK_DST, child)
        set_link_flags(copy, L_ACK_REQ)
        return copy

    def _repair_copy(self, child):
        """A child (back) with us gets a copy of the newest broadcast still owed (flood.REPAIR_MS): its copy
        from us may have failed through a fade (a first-ring module's three rounds to the concentrator within
        five minutes), or it chose us after the broadcast and its old parent's copy went elsewhere. It
        acknowledges with L_HAD if it has it already."""
        b = self.flood.repairable()
        if b is not None:
            self.enqueue(self._copy(b.frame, child), False, False, child)  # a copy always fits, and goes last
            self.queue[-1].repair = True

    def _flood_slot(self, now, guard, k=0):
        """Tick to send a broadcast copy, ``guard`` ms early (_guard), jittered: our children's own slot
        (``k`` 0), else the ``k``-th of their broadcast slots from now, counting their own and the dense
        ones' second slot (mac.broadcast_depths). The concentrator's children hear one router a level up
        and are never dense: its copies go to their own slot only (block seed 8: its first copy went to
        the second slot, and 13 of its 68 children missed a broadcast)."""
        phase = self.net_phase(now) + guard
        own = slot_wait(self.routing.depth + 1, phase) or SUPERFRAME_MS
        if k == 0 or self.routing.depth == 0:
            return ticks_add(now, own + (k + 1) // 2 * SUPERFRAME_MS + self.rand.below(CONTENTION_MS))
        second = slot_wait(self.routing.depth + 1 + SECOND_SLOT, phase) or SUPERFRAME_MS
        wait = (min(own, second) if k % 2 == 0 else max(own, second)) + k // 2 * SUPERFRAME_MS
        return ticks_add(now, wait + self.rand.below(CONTENTION_MS))

    def _beacon_slot(self):
        """The depth slot our beacon goes out in, by turns (``_turn``).

        With a route: our children's slot, and every other time the slot a hop deeper, where
        routers sample that would be a hop nearer the concentrator through us. A router hears
        only the level above it: one that attached a hop too deep (after a reboot it takes the
        first parent it hears, often a sibling that came back a moment earlier) never heard the
        shallower parent again, and the tree only grew deeper (30-hop chain after an update's
        reboot wave: up to 8 hops deeper than the street, 40 of 240 beyond the hop limit). The former
        children of a router that moved a hop nearer also sample there until they hear of it.

        Without a route: the slot where the nearest router we have heard samples, so that our
        request (RPL's DIS) is heard (after a reboot a module otherwise asked in a slot nobody
        listened to and stayed out), and our former children's, so that they hear our rank fall
        to infinite and leave us (they went on naming us as their parent, which barred them to
        us: a first-ring module that lost the concentrator listened 6 minutes for a parent at
        15.7 mA).

        After our depth changed, every other beacon (FORMER_BEACONS of them) goes to the slot our
        children sampled before: they hear only that slot, and otherwise learnt our new depth only
        from an ACK to their next upward frame (after a reboot wave, a chain module whose parent had
        come 9 hops nearer stayed 9 hops too deep, and its subtree beyond the hop limit)."""
        r = self.routing
        self._turn = not self._turn
        if r.rank != control.RANK_INFINITE:
            slot = r.depth + 1
            if self._children_slot is not None and self._children_slot != slot:
                self._former_slot, self._former_left = self._children_slot, FORMER_BEACONS
            self._children_slot = slot
            if self._former_left and self._turn:
                self._former_left -= 1
                return self._former_slot
            return slot + (1 if self._turn else 0)
        if self._turn and self._children_slot is not None:
            return self._children_slot
        depth = MAX_HOPS
        for n in r.table.values():
            if n.rank != control.RANK_INFINITE and n.depth < depth:
                depth = n.depth
        return depth

    def _beacon_soon(self, now):
        """One beacon in its slot (``_beacon_slot``) of this superframe or the next."""
        self._beacon_guard = guard = self._guard(None, now)
        self._beacon_at = ticks_add(now, slot_wait(self._beacon_slot(), self.net_phase(now) + guard)
                                    + self.rand.below(CONTENTION_MS))

    def _send_beacon(self, now):
        r = self.routing
        parent = r.preferred.addr if r.preferred is not None else BROADCAST
        preamble = WAKE_PREAMBLE_MS + 2 * self._beacon_guard
        # The phase where the frame itself begins, after the preamble: its receivers know only the frame's length.
        payload = struct.pack(control.BEACON_FMT, r.version & 0xFF, r.depth, r.rank, parent,
                              self.net_phase(ticks_add(now, preamble)))
        return self._transmit(self._seal(T_BEACON, BROADCAST, payload, self.net_key), now, True, preamble)

    def _ack(self, f, now, flags=0):
        r = self.routing
        # The phase it goes at: ACK_DELAY_MS after the frame it answers came in (``now``; mac.py), however long
        # taking the frame and sealing this took (about 9.6 ms on the board: balans bench mcu, ack_ready).
        payload = struct.pack(control.ACK_FMT, r.rank, r.depth, self.net_phase(ticks_add(now, ACK_DELAY_MS)))
        frame = seal_frame(Frame(self.net_id, T_ACK, self.addr, f.link_src, self.counter.take(), payload),
                           self.net_key, struct.pack(control.ACKED_FMT, f.src, f.counter))
        if flags:
            set_link_flags(frame, flags)
        # No carrier sense: the sender listens for us right now; deferring would miss its window
        # and make it retry (as 802.15.4 acknowledgements after the turnaround).
        self._transmit(frame, now, False)

    def enqueue(self, frame, up, urgent=False, child=None):
        """Queue a sealed unicast for its next hop (``child``: that neighbour, whatever the routes);
        False when the queue is full. A broadcast's copy to a follower (``child``) always fits: followers_max
        bounds those, and a copy refused was lost for good (block seed 29: the busiest relay's queue was full
        67 times a day, and three of its followers missed a broadcast)."""
        if len(self.queue) >= self.queue_max and child is None:
            self.queue_full += 1
            return False
        job = Job(frame, up, child)
        if urgent:
            self.queue.insert(0, job)
        else:
            self.queue.append(job)
        return True

    def _first_hop(self, job, now):
        """The hop of a frame's first attempt: an upward frame goes first to the preferred parent when our
        clock needs its sync (cycle.Cycle.sync_due), or when it has not yet acknowledged a frame flagged
        L_PREFERRED from us, so that it learns at once that it owes us broadcast copies (round robin over
        the parent set told it only when its turn came)."""
        pref = self.routing.preferred
        if job.up and pref is not None and (pref is not self._told or self.cycle.sync_due(now)):
            return pref.addr
        return self._hop_for(job)

    def _hop_for(self, job):
        if job.up:
            if job.dst != CONCENTRATOR:
                return job.dst  # a sync ask: for that parent only
            if job.rounds > 1 and job.attempts // SAME_HOP_ATTEMPTS % 2 == 0:
                # Later rounds go by turns through a detour (Routing.detour): a first-ring relay's one
                # link to the concentrator fades for tens of minutes (rural seed 1: 51 of 91 reports
                # dropped so), and the detour's way up is another one.
                detour = self.routing.detour(job.hop, job.frame[O_HOPS] & HOPS_MASK)
                if detour is not None:
                    return detour
            hop = self.routing.next_hop()
            if hop == job.hop and len(self.routing.parents) > 1:
                hop = self.routing.next_hop()  # not the one that just failed (the turns skip _first_hop's picks)
            return hop
        if job.child is not None:
            return job.child
        return self.routes.get(job.dst)

    def _schedule(self, job, now):
        """Aim the next attempt at the hop's sample time, spread over the contention window.

        Right after an acknowledged frame to the same router, shortly after its
        sample, the next frame goes at once: a router woken by a frame stays
        awake while the channel stays busy, so a burst costs one wake-up.
        """
        job.aimed = False
        if self._awake(job.hop, now):
            job.at = now
            job.not_before = None
            job.guard = 0
            return
        level = rendezvous.doubt(self.cycle, job.up, job.rounds, job.attempts, _per_round(job))
        job.guard = self._guard(job.hop, now, job.attempts, level)
        job.aimed = job.hop != CONCENTRATOR
        wait = unicast_wait(job.hop, self._phase_of(job.hop, now) + job.guard)
        # Binary exponential backoff. On a busy channel: a sleeping hop's next sample (the contention window
        # cannot widen: the wake preamble covers the sample only from inside it, mac.py), the always-listening
        # concentrator within a widening window. After an unanswered attempt over whole samples (hidden
        # senders that collided aim at the same sample again and would collide again), at the concentrator
        # over frame times.
        wait += self.rand.below(CONTENTION_MS << job.busy if job.hop == CONCENTRATOR else CONTENTION_MS)
        if job.attempts and not job.busy and job.not_before is None:  # (a queued retry has waited already)
            wait += self._retry_spread(job) * (SUPERFRAME_MS if job.hop != CONCENTRATOR else ROOT_RETRY_MS)
        job.not_before = None
        job.at = ticks_add(now, wait)

    def _guard(self, hop, now, attempts=0, level=0):
        """The guard of a frame to ``hop`` (rendezvous.guard; None: our children's broadcast slot; ``level``: how much
        the attempt doubts the rendezvous, rendezvous.doubt)."""
        preferred = self.routing.preferred
        return rendezvous.guard(self.cycle, None if preferred is None else preferred.addr, hop, now, attempts, level)

    def _retry_spread(self, job):
        """Whole samples an unanswered attempt's retry skips: 0-1, then 0-3."""
        return self.rand.below(1 << min(job.attempts, RETRY_SPREAD_DOUBLINGS))

    def _awake(self, hop, now):
        """True if ``hop`` acknowledged us a moment ago early in its sample, after a frame that told it
        another follows (L_MORE): it is still awake, and one more exchange fits before its slot ends,
        so a frame to it goes at once (a burst)."""
        if hop != self._burst_hop or not self._burst_more or ticks_diff(self._burst_until, now) <= 0:
            return False
        wait = unicast_wait(hop, self.net_phase(now))
        return (SUPERFRAME_MS - wait) % SUPERFRAME_MS < SLOT_MS - BURST_TAIL_MS

    def _more_for(self, job):
        """Whether another queued frame goes to ``job``'s hop: its receiver should stay awake after the ACK.

        Downward frames go along routes; upward ones round robin over the parent set, so only with a
        single parent is the next one known to go to the same hop.
        """
        single = len(self.routing.parents) == 1
        queue = self.queue
        for i in range(min(len(queue), LOOKAHEAD)):
            other = queue[i]
            if other.up:
                if job.up and single:
                    return True
            elif not job.up and self._hop_for(other) == job.hop:
                return True
        return False

    def _next_job(self, now):
        """Index of the queued frame to send next, None if none may go yet: the head, or if the head
        goes down, the downward frame among the first LOOKAHEAD whose hop is awake (a burst) or
        samples soonest (the concentrator's answers to its many children need not wait for each
        other's phases), skipping those waiting out a retry's backoff; if all of those wait, the
        first upward frame."""
        queue = self.queue
        if queue[0].up:
            return 0
        phase = self.net_phase(now)
        best, best_wait, first_up = None, SUPERFRAME_MS, None
        for i in range(min(len(queue), LOOKAHEAD)):
            job = queue[i]
            if job.up:
                if first_up is None and self.routing.parents:
                    first_up = i
                continue
            if job.not_before is not None and ticks_diff(job.not_before, now) > 0:
                continue
            hop = self._hop_for(job)
            if hop is None:
                return i  # no route: dropped at once
            wait = 0 if self._awake(hop, now) else unicast_wait(hop, phase)
            if wait < best_wait:
                best, best_wait = i, wait
        return first_up if best is None else best

    def _job_due_in(self, now):
        if self.job is not None:
            return max(0, ticks_diff(self.job.at, now))
        queue = self.queue
        if not queue:
            return None
        if queue[0].up:
            return 0 if self.routing.parents else None
        best = None  # every downward frame in view waits out a backoff: wake when the first may go
        for i in range(min(len(queue), LOOKAHEAD)):
            job = queue[i]
            if job.up:
                if self.routing.parents:
                    return 0
                continue
            due = 0 if job.not_before is None else max(0, ticks_diff(job.not_before, now))
            if due == 0:
                return 0
            if best is None or due < best:
                best = due
        return best

    def _run_jobs(self, now):
        while True:
            job = self.job
            if job is None:
                if not self.queue:
                    return
                i = self._next_job(now)
                if i is None:
                    return  # every frame in view waits out a backoff (_job_due_in says until when)
                job = self.queue[i]
                job.hop = self._first_hop(job, now)
                if job.hop is None:
                    if job.up:
                        return  # wait for a parent; a beacon brings one
                    self.queue.pop(i)
                    self.dropped += 1
                    continue
                self.queue.pop(i)
                self.job = job
                self._schedule(job, now)
            if ticks_diff(now, job.at) < 0:
                return
            if job.waiting:
                self._attempt_failed(job, now)
                continue
            struct.pack_into("<HH", job.frame, 5, self.addr, job.hop)
            if job.up:  # tell the parent whether it is our preferred one (it owes us broadcasts) and we are dense
                preferred = self.routing.preferred
                flags = L_PREFERRED if preferred is not None and preferred.addr == job.hop else 0
                if self.dense():
                    flags |= L_DENSE
            else:
                flags = job.frame[O_HOPS] & L_ACK_REQ
            set_link_flags(job.frame, flags | (L_MORE if self._more_for(job) else 0))
            if job.aimed and rendezvous.late(job.at, now):  # aimed at a sample the radio's earlier work made us miss
                self._schedule(job, now)
                return
            preamble = guarded_preamble_ms(job.frame, job.guard)
            if self._transmit(job.frame, now, True, preamble):
                job.waiting = True
                job.attempts += 1
                job.at = ticks_add(now, airtime_ms(job.frame, preamble) + ACK_TIMEOUT_MS)
                return
            job.busy += 1
            if job.busy > CCA_RETRIES:
                job.attempts += 1
                self._attempt_failed(job, now, False)
            elif job.up:
                self._schedule(job, now)
            else:
                # Downward, the busy hop's next sample is a superframe away: the frame waits for it in the
                # queue while frames to hops that sample sooner go (a first-ring parent's broadcast copies
                # to its ten children waited 2 s behind each busy one).
                self.job = None
                self.queue.insert(0, job)
            return

    def _attempt_failed(self, job, now, link_fault=True):
        """An attempt went unanswered (``link_fault``) or never found the channel free."""
        job.waiting = False
        job.busy = 0
        if link_fault and job.up and job.aimed:
            self.cycle.misses += 1  # perhaps our clock, not the link (cycle.DOUBT_AFTER)
        if link_fault:
            # Upward, a failure in the first round counts towards writing the link off only when another
            # parent could carry the frame: writing off the only way up detaches us and our subtree for a
            # fade (a first-ring relay whose one parent is the concentrator); a dead parent also fails
            # the later rounds, and DEAD_AFTER of those write it off. The link's quality falls either way.
            self.routing.link_result(job.hop, False, not job.up or job.rounds > 1
                                     or self.routing.has_alternative(job.hop))
            if self.routing.select(now):
                self._routing_changed(now)
        limit = _per_round(job)
        if job.attempts >= limit and job.rounds < ROUNDS and self._pausing() < MAX_PAUSED:
            # Wait out the fade and try again: the attempts of one round all went within a second or two.
            self.job = None
            self.retries += 1
            job.rounds += 1
            job.attempts = 0
            job.at = ticks_add(now, PAUSE_MS + self.rand.below(PAUSE_SPREAD_MS))
            self.paused.append(job)
            return
        if job.attempts >= limit:
            self.job = None
            self.dropped += 1
            if job.child is not None:
                self.followers.pop(job.child, None)  # gone or out of reach: its next upward frame says
                self._dense.discard(job.child)
            elif not job.up:
                self.routes.pop(job.dst, None)
            return
        self.retries += 1
        # Upward, the same parent gets SAME_HOP_ATTEMPTS tries before the next in the set: most unanswered
        # attempts lost only the acknowledgement, and another parent would relay a copy that goes all the
        # way up beside the first (30-hop chain: four in ten frames on the air were such copies at one
        # try; at two, 1.8 % of the hops made a copy, and the first ring relayed 13 % more frames than
        # reached the concentrator; at three, 7 % fewer relayed in each ring).
        if (not job.up or job.attempts % SAME_HOP_ATTEMPTS == 0
                or not (self.routing.is_parent(job.hop) or job.rounds > 1 and self.routing.is_detour(job.hop))):
            job.hop = self._hop_for(job)
        if job.hop is None:
            self.job = None
            self.queue.insert(0, job)  # no parent left: wait for one
            return
        if not job.up and job.child is None:
            # A routed downward frame waits out its backoff in the queue, at its place in front, while
            # frames to other children go (one unanswered child held the concentrator's answers for
            # up to 6 s each time; Job.not_before).
            job.not_before = ticks_add(now, self._retry_spread(job) * SUPERFRAME_MS)
            self.job = None
            self.queue.insert(0, job)
            return
        if job.child is not None:
            # A broadcast's copy waits its backoff behind the other children's copies, not in front, and in
            # the queue (Job.not_before), not as the job in hand: a first-ring parent has ten of them, and
            # one child out of reach held the rest for seconds.
            job.not_before = ticks_add(now, self._retry_spread(job) * SUPERFRAME_MS)
            self.job = None
            self.queue.append(job)
            return
        self._schedule(job, now)

    def _resume(self, now):
        """Frames whose pause is over go back to the head of the queue for their next round."""
        paused = self.paused
        i = 0
        while i < len(paused):
            if ticks_diff(now, paused[i].at) >= 0:
                self.queue.insert(0, paused.pop(i))
            else:
                i += 1

    def _pausing(self):
        """Frames waiting out a fade (the paused list also holds broadcast copies held back: BACKUP_DELAY_MS)."""
        n = 0
        for job in self.paused:
            if job.rounds > 1:
                n += 1
        return n

    def _paused_due_in(self, now):
        best = None
        for job in self.paused:
            d = max(0, ticks_diff(job.at, now))
            if best is None or d < best:
                best = d
        return best

    def _routing_changed(self, now):
        """Attached, detached, a new depth or a significant rank change: tell the neighbourhood soon."""
        self.trickle.reset(now, ASK_MS if self.routing.rank == control.RANK_INFINITE else 0)

    # ---- receiving ----------------------------------------------------------

    def _open(self, buf, key, bound=b""):
        try:
            return open_frame(buf, key, self.net_id, bound)
        except ProtocolError:
            return None

    def _receive(self, buf, rssi, now):
        try:
            f = parse_header(buf)
        except ProtocolError:
            return
        if f.net_id != self.net_id:
            return
        kind = f.kind
        if kind == T_ACK:
            if f.link_dst == self.addr:
                self._on_ack(buf, f, rssi, now)
        elif kind == T_BEACON:
            if f.link_dst == self.addr:
                self._on_sync_ask(buf, f, now)
            else:
                self._on_beacon(buf, rssi, now)
        elif kind == T_BCAST:
            self._on_broadcast(buf, f, now)
        elif kind == T_OTA:
            if self.ota is not None:
                self.ota.on_frame(buf, f, now)
        elif f.link_dst == self.addr:
            self._on_unicast(buf, f, rssi, now)

    def _neighbour_says(self, fr, rssi, now, rank, depth):
        """A neighbour's authenticated frame: note it; None if it is a replay or the table is full."""
        n = self.routing.heard(fr.src, rssi, now, rank)
        if n is None or fr.counter <= n.counter:
            return None
        n.counter = fr.counter
        n.rank = rank
        n.depth = depth
        return n

    def _open_control(self, buf, fmt, length, bound=b""):
        """A network-key control frame and its fields, or (None, None) if it does not check out."""
        fr = self._open(buf, self.net_key, bound)
        if fr is None:
            return None, None
        try:
            return fr, control.unpack(fmt, length, fr.payload)
        except ProtocolError:
            return None, None

    def _on_ack(self, buf, f, rssi, now):
        # An ACK names the frame it acknowledges only in its tag (control.ACKED_FMT): it opens only as the
        # acknowledgement of the frame we wait for, from the hop we sent it to.
        job = self.job
        if job is None or not job.waiting or f.src != job.hop:
            return
        fr, fields = self._open_control(buf, control.ACK_FMT, control.ACK_LEN,
                                        struct.pack(control.ACKED_FMT, job.src, job.counter))
        if fr is None:
            return
        rank, depth, phase = fields
        n = self._neighbour_says(fr, rssi, now, rank, depth)
        if n is not None:
            n.version = self.routing.version  # it acknowledged within our network generation
            if n is self.routing.preferred:
                self._sync(phase, buf, now)
            elif job.up and self.cycle.misses:
                self.cycle.misses -= 1  # another parent met: our clock is perhaps not the one at fault
                if depth + 1 != self.routing.depth and self.routing.select(now):
                    # Our preferred parent moved (an ACK is often the only news: we sample our own depth's
                    # slot, and a parent that came hops nearer beacons in slots we do not sample). Before,
                    # the depth stayed stale: after a reboot wave a chain module knew its parent at depth
                    # 11 and itself stayed at 19, listening where nobody sent, its subtree beyond the limit.
                    self._routing_changed(now)
            self._note_skew(n, phase, buf, now)
        # The acknowledgement counts even from a neighbour the full table has no room for (the
        # concentrator's tens of children): it names our frame, which makes a replay harmless.
        self.acked += 1
        self.routing.link_result(job.hop, True)
        if job.child is not None and job.child in self.followers:
            if f.link_flags & L_ELSEWHERE:
                self.followers[job.child] = ELSEWHERE
            elif not job.repair:  # a repair's L_HAD says it got the broadcast somehow, not that our flood reaches it
                self.followers[job.child] = HAD if f.link_flags & L_HAD else FRESH
        if job.up and job.frame[O_HOPS] & L_PREFERRED:
            self._told = n if n is not None else self.routing.table.get(job.hop)
        self.job = None
        self._burst_until = ticks_add(now, BURST_GAP_MS)
        self._burst_hop = job.hop
        self._burst_more = bool(job.frame[O_HOPS] & L_MORE)
        if job.up and rank >= self.routing.rank and self.routing.select(now):
            self._routing_changed(now)  # the parent now sits below us: reselect

    def _on_sync_ask(self, buf, f, now):
        """A child asks for our phase (an empty beacon to us: node.SYNC_ASK_DRIFT_MS); our ACK carries it."""
        if f.ftype & F_ACK_REQ and self._open(buf, self.net_key) is not None:
            self._ack(f, now)

    def _on_beacon(self, buf, rssi, now):
        fr, fields = self._open_control(buf, control.BEACON_FMT, control.BEACON_LEN)
        if fr is None:
            return
        version, depth, rank, parent, phase = fields
        n = self._neighbour_says(fr, rssi, now, rank, depth)
        if n is None:
            # A full table has no room for a node without a route, but its request is answered all
            # the same: the concentrator (24 entries, tens of children) ignored a child that had
            # written its link off, and that child listened 6 minutes for a parent at 15.7 mA.
            if rank == control.RANK_INFINITE:
                self._answer(now)
            return
        n.version = version
        n.parent = parent
        self._beacon_heard(n, phase, buf, now)
        self._note_skew(n, phase, buf, now)

    def _beacon_heard(self, n, phase, buf, now):
        """Routing reacts to a neighbour's advertisement (the node overrides)."""
        if n.version == self.routing.version:
            self.trickle.consistent()
        self._solicited(n, now)

    def _solicited(self, n, now):
        """A neighbour without a route advertises rank infinite (RPL's DIS): answer it unless it was our child."""
        if n.rank == control.RANK_INFINITE and n.parent != self.addr:
            self._answer(now)

    def _answer(self, now):
        """One beacon soon for a neighbour without a route, at most one per ANSWER_GAP_MS."""
        if self.routing.rank == control.RANK_INFINITE or self._beacon_at is not None:
            return
        if self._answered_at is not None and ticks_diff(now, self._answered_at) < ANSWER_GAP_MS:
            return
        self._answered_at = now
        self._beacon_soon(now)

    def _on_unicast(self, buf, f, rssi, now):
        key = (f.src, f.counter)
        if key in self.recent:
            if f.ftype & F_ACK_REQ:
                self._ack(f, now)  # our acknowledgement was lost: confirm again, do not relay twice
            return
        # The acknowledgement is sealed from the header before any other work, as soon as we know we take the
        # frame: it goes mac.ACK_DELAY_MS (12 ms) after the frame, and MicroPython hands it to the radio about 9.6 ms
        # after the frame so, 11.2-11.5 ms after opening the frame first (balans bench mcu, ack_ready).
        if f.dst == self.addr:
            # Acknowledged before it is opened, as a relay acknowledges what it cannot open, and even when the
            # replay window refuses it: the hop did deliver the frame, and an unanswered one would be retried and
            # count against a sound link (frames of one origin overtake each other on a parent set; a late one
            # was written off as a dead link and on the 30-hop chain cut the first ring from the concentrator).
            if f.ftype & F_ACK_REQ:
                self._ack(f, now)
            fr = self._open_own(buf, f)
            if fr is None:
                return
            self._remember(key)
            self._note_follower(f)
            if self._fresh(fr):
                self._deliver_own(fr, f, now)
            return
        if not self._relay(buf, f, now, f.ftype & F_ACK_REQ):
            return
        self._remember(key)
        self._note_follower(f)

    def _note_follower(self, f):
        """An upward frame we took says whether its sender chose us as its preferred parent."""
        if f.dst != CONCENTRATOR:
            return
        if f.link_flags & L_PREFERRED:
            if f.link_flags & L_DENSE:
                self._dense.add(f.link_src)
            else:
                self._dense.discard(f.link_src)
            state = self.followers.get(f.link_src)
            if state == ELSEWHERE or state is None and len(self.followers) < self.followers_max:
                self.followers[f.link_src] = FRESH  # (back) with us: its copies go at once again
                self._repair_copy(f.link_src)
        else:
            self.followers.pop(f.link_src, None)
            self._dense.discard(f.link_src)

    def _children_dense(self):
        """True if a follower hears many flood forwarders a level up (L_DENSE): so do our other children."""
        for child in self.followers:
            if child in self._dense:
                return True
        return False

    def _remember(self, key):
        self.recent.append(key)
        if len(self.recent) > RECENT:
            self.recent.pop(0)

    def _relay(self, buf, f, now, ack=False):
        """Take a frame to forward, acknowledged (``ack``) as soon as we know we can carry it; False (no
        acknowledgement) if we cannot."""
        if f.dst == CONCENTRATOR:
            if self.routing.is_parent(f.link_src):
                self._loop_detected(f.link_src, now)
                return False
            if f.src == self.addr and self.routing.preferred is not None:
                # Our own frame came back: our route runs in a circle longer than two hops, which a parent
                # handing it back does not reveal (modules rebooting one after another took a parent whose
                # route still ran through one of them, and the circle counted its ranks up to the hop limit).
                self._loop_detected(self.routing.preferred.addr, now)
                return False
            if not self.routing.parents:
                return False
            up = True
        elif f.dst in self.routes:
            up = False
        else:
            return False
        if f.hops >= MAX_HOPS:
            return False  # hop limit: a frame that went round in circles ends here (relay_header)
        if len(self.queue) >= self.queue_max:
            self.queue_full += 1
            return False
        if ack:
            self._ack(f, now)
        if up:
            self._learn_route(f.src, f.link_src)
            n = self.routing.table.get(f.link_src)
            if n is not None:
                # It routes through us, whatever rank it advertised before: not a parent for us until its
                # next beacon names its parent (choosing it when our own parent fades made loops)
                n.parent = self.addr
        frame = bytearray(buf)
        relay_header(frame, self.addr, CONCENTRATOR)
        # A join answer goes before the frames queued ahead of it: on a cold start it crosses relays
        # whose queues hold their subtrees' first reports, and a module not answered within minutes
        # asks again (30-hop chain: 580 requests for 240 modules). Requests keep their place: put
        # first too, they changed how an update's reboot wave settles, and the chain came back with
        # modules beyond the hop limit (tests/test_mesh.py, rebooted hop by hop).
        if not self.enqueue(frame, up, not up and f.kind == T_JOIN):
            return False
        self.relayed += 1
        return True

    def _learn_route(self, dst, hop):
        if dst in self.routes or len(self.routes) < MAX_ROUTES:
            self.routes[dst] = hop

    def _loop_detected(self, addr, now):
        """A parent handed us an upward frame: it routes through us. Drop it as a parent."""
        n = self.routing.table.get(addr)
        if n is not None:
            n.rank = control.RANK_INFINITE
        if self.routing.select(now):
            self._routing_changed(now)

    def _on_broadcast(self, buf, f, now):
        if f.src != CONCENTRATOR:
            return
        ack = f.link_dst == self.addr and f.link_flags & L_ACK_REQ  # our parent's copy to us
        pref = self.routing.preferred
        elsewhere = 0 if pref is not None and pref.addr == f.link_src else L_ELSEWHERE
        if self.flood.find(f.counter) is not None:
            if ack:
                # We have it (flooded, or our acknowledgement was lost): stop the retries, and say so, so
                # that the parent sends our next copy after those to children the flood missed (HAD); a
                # parent that is no longer our preferred one hears that too (L_ELSEWHERE).
                self._ack(f, now, L_HAD | elsewhere)
            return
        fr = self._open(buf, self.net_key)
        if fr is None or fr.src != CONCENTRATOR:
            return
        try:
            self.bcast_window.accept(fr.src, fr.counter)
        except ProtocolError:
            return
        if ack:
            self._ack(f, now, elsewhere)
        frame = bytearray(buf)
        try:
            relay_header(frame, self.addr, BROADCAST)
            self._start_broadcast(fr.counter, frame, now)
        except ProtocolError:
            self.flood.start(fr.counter, frame, now, now, 0).sends_left = 0  # hop limit: delivered, spread no further
        self._deliver_broadcast(fr.payload, now)
