"""An update carried hop by hop in a mesh station's T_OTA frames (docs/ota.md, "Over the mesh").

The station hands every T_OTA frame to ``station.ota`` (a MeshOta) and polls
it with its timers. Each hop runs the messages of ota/transfer.py:

- ANNOUNCE goes from a parent to its children: update ``session`` exists,
  for these modules or all. Every module passes it on to its own children,
  with Trickle-like doubling pauses, so the whole tree learns of it.
- A module the update is for asks its preferred parent for the first unit it
  lacks (NEED), at the parent's upward sample. A module it is not for starts
  asking only when a child asks it: it carries the update for them and drops
  its copy afterwards.
- The parent answers at once, to the child, which still listens after its
  NEED: every fragment of the unit it lacks (``have`` in NEED spares what it
  holds) back to back, only the first with the wake preamble (F_FOLLOWS). The
  parent listens a moment longer and the child asks for the next unit right
  after the burst: a unit crosses a hop in one exchange of a few hundred ms,
  not a superframe.
- A parent that does not hold the unit yet keeps the request and sends the
  unit in its children's broadcast slot once it has it, to BROADCAST, so every
  child waiting for it takes it at once; pages flow down the chain as they
  come, and the child meanwhile asks again less and less often.
- A child takes fragments only from its parent, for the unit it needs next;
  its Receiver checks each page against the signed table before it keeps or
  serves it.

Frames are link-local and sealed under the network key: the update's own
signature and page hashes make it trustworthy, not the frame. OTA frames may
use OTA_AIR_MS of the 10 % duty cycle, so reports and routing keep theirs; a
module whose battery is below the update's floor refuses it (Updater.offer)
and stops serving.

Download and switch are apart, so that no relay reboots while a module below
it still needs it, and the fleet restarts once, in order, rather than in a
cascade that breaks relays' routes under their children: a module holding
every page answers WAIT while a child of it still asks, and DONE once every
child said DONE (or fell silent for CHILD_LOST_MS: it found another parent;
a module that never heard a child waits QUIET_MS for latecomers), and then
waits. When every target has reported that it holds the image, the edge agent
sends ACTIVATE, a time passed on down the tree like ANNOUNCE (and to each
child that speaks to its parent): from then on the modules holding the image
install it and reboot, outward from the concentrator a hop every
SWITCH_STEP_MS, so each comes back to a parent that is back and attached (a
module the update is not for drops its carried copy). A module that completes
after that time, or hears no ACTIVATE within SELF_ACTIVATE_MS, installs once
its subtree is done.
"""

from protocol import messages
from protocol.compat import const
from protocol.errors import AuthError, ProtocolError
from protocol.frame import BROADCAST, F_FOLLOWS, MAX_HOPS, T_OTA

from firmware.common.mesh.clock import ticks_add, ticks_diff
from firmware.common.mesh.duty import LIMIT_MS
from firmware.common.mesh.mac import (CONTENTION_MS, SUPERFRAME_MS, airtime_ms, guarded_preamble_ms, slot_wait,
                                      unicast_wait)
from firmware.common.ota import transfer
from firmware.common.ota.slots import make_dirs, read_file, write_atomic

GATHER_MS = const(40)  # a parent answers this long after a NEED: the child's radio turns round to receive
ANSWER_MS = const(120)  # a child that asked listens this long for the burst (gather, turnaround, margin)
BURST_END_MS = const(45)  # silence after a fragment that ends a burst (frames come 26 ms apart)
UNANSWERED_DOUBLINGS = const(3)  # unanswered NEEDs back off to 8 superframes (a parent sends a unit it gets)
# OTA frames may take 8 of the hour's 10 %: reports and routing keep 2 % (72 s an hour), ten times what
# the busiest first-ring relay of 240 modules sends; one image copy is about 70 s of air
OTA_AIR_MS = LIMIT_MS * 8 // 10
CCA_TRIES = const(3)  # a fragment finding the channel busy is tried again at once this often (then the burst ends)
ANNOUNCE_MIN_MS = const(4000)
ANNOUNCE_MAX_MS = const(64000)  # a module that lost its RAM in a power cut soon hears whom the update is for
WAIT_MS = const(20000)  # a module waiting for its children tells its parent this often
CHILD_LOST_MS = const(300000)  # a child silent this long went to another parent (or is dead: a power cut is shorter)
QUIET_MS = const(60000)  # a module that never heard a child waits this long for late ones
REPORT_REPEATS = const(3)
REPORT_GAP_MS = const(600000)
DONE_REPEATS = const(3)  # DONE goes up this many times, a superframe apart, before the module reboots
# The fleet switches outward from the concentrator, a hop every SWITCH_STEP_MS: a module reboots once its
# parent is back (reboot ~30 s) and attached, so that its join finds a parent that relays it (all at once,
# a child back before its parent had a route got no acknowledgement, wrote the link off and stayed out)
SWITCH_STEP_MS = const(60000)
SELF_ACTIVATE_MS = const(43200000)  # no ACTIVATE half a day after holding the image (a target died): switch alone
QUIET_ANNOUNCES = const(60)  # announcements without a request from a child after which a module stops (~1 h): a child
# that changes parents (the tree moves under the update's load) must still hear of the update from the new one
_STATES = {transfer.NEEDS: messages.OTA_LOADING, transfer.WAIT: messages.OTA_DONE, transfer.DONE: messages.OTA_DONE,
           transfer.REFUSED: messages.OTA_REFUSED}


class MeshOta:
    def __init__(self, station, store, on_install=None, upstream=None):
        """``store``: this station's transfer.Receiver. ``on_install()``: the update is installed as the
        trial image; the host reboots into it. ``upstream(payload)``: NEEDs go there instead of to a radio
        parent (the concentrator asks its edge agent), whose fragments and announcements come back by
        ``from_upstream``."""
        self.st = station
        self.store = store
        self.on_install = on_install
        self.upstream = upstream
        self.session = None
        self.targets = None  # () every module, else the addresses the update is for; None: not announced yet
        self.carrying = False  # asked by a child for an update not meant for this module
        self.children = {}  # addr -> [last NEED status, tick, told the time to switch]
        self.requests = []  # [part, index, fragment bits asked for, link destination, tick of the last NEED]
        self.asked = None  # (parent, part, index) of the unit needed next: fragments are taken for it only
        self.need_at = None  # tick of the next NEED
        self.need_guard = 0  # and its wake preamble's guard (rendezvous.guard)
        self.slot_guard = 0  # the guard of what goes in our children's slot (announcements, bursts)
        self.unanswered = 0  # NEEDs in a row no fragment followed
        self.serve_at = None  # tick of the next burst
        self.announce_at = None
        self.announce_gap = ANNOUNCE_MIN_MS
        self.quiet = 0  # announcements since a child last asked
        self.dones = 0  # DONEs sent to the parent
        self.done_at = None  # tick this module first held every page
        self.activate_at = None  # the agent's ACTIVATE time: modules switch from it on, depth by depth
        self.ring_at = None  # the concentrator's first ring switches: it beacons then, for them to come back to
        self.reported = None  # the last OTA_STATUS state sent up
        self._outcome = None  # [payload, repeats left, tick of the next]: an outcome is reported again
        self.finished = False
        self.running = False  # this module runs the update (it rebooted into it)
        self.deferred = 0  # frames held back by the OTA share of the duty cycle
        self._announce_path = store.updater.slots.root + "/announce"
        if store.session is not None and store.updater.download.manifest is not None:
            # A download survived a power cut: fetch on at once, for the modules the saved announcement named.
            self.carrying = True
            self._adopt(store.session, self._saved_targets(store.session), station.hal.ticks_ms())

    # ---- what the station calls ---------------------------------------------

    def on_frame(self, buf, f, now):
        st = self.st
        if f.dst != BROADCAST and f.dst != st.addr:
            return
        fr = st._open(buf, st.net_key)
        if fr is None or not fr.payload:
            return
        parent = st.routing.preferred
        from_parent = self.upstream is None and parent is not None and f.link_src == parent.addr  # broadcast or ours
        self._take(fr.payload, now, from_parent, f.link_src, fr.src if fr.dst == st.addr else None)

    def from_upstream(self, payload, now):
        """An ANNOUNCE, ACTIVATE or FRAGMENT from the edge agent (the concentrator's parent)."""
        self._take(payload, now, True, None, None)

    def _take(self, payload, now, from_parent, sender, requester):
        """One hop message. ``sender``: the neighbour it came from (None: the agent, trusted for
        fragments); a fragment counts only if we asked that sender for its unit. ``requester``:
        who a NEED addressed to us comes from (None: not ours to answer)."""
        try:
            if payload[0] in (transfer.ANNOUNCE_MSG, transfer.ACTIVATE_MSG):
                if from_parent or self.session is None and payload[0] == transfer.ANNOUNCE_MSG:
                    # Not from our parent, only the news that an update exists: a module that moved to a parent
                    # which had stopped announcing (an hour without a request) never heard of the update (30-hop
                    # chain: one module held the whole fleet's switch for 13 hours). It asks its parent for it.
                    self._from_parent(payload, now)
                return
            kind, session, part, index, sub, data = transfer.parse(payload)
        except ProtocolError:
            return
        if kind == transfer.FRAGMENT_MSG:
            if sender is None or self.asked == (sender, part, index):
                self._fragment(session, part, index, sub, data, now)
        elif requester is not None:
            self._request(requester, session, part, index, sub, data[0], data[1], now)

    def poll(self, now):
        self._report_again(now)
        if self.session is None:
            return
        if self.announce_at is not None and ticks_diff(now, self.announce_at) >= 0:
            self._announce(now)
        if self.serve_at is not None and ticks_diff(now, self.serve_at) >= 0:
            self._serve(now)
        if self.need_at is not None and ticks_diff(now, self.need_at) >= 0:
            self._ask(now)
        if self.ring_at is not None and ticks_diff(now, self.ring_at) >= 0:
            # its Trickle is long since slow: rebooted modules heard a deeper router first and looped
            self.ring_at = None
            self.st.trickle.reset(now)

    def due_in(self, now):
        best = None
        for at in (self.announce_at, self.serve_at, self.need_at, self.ring_at, self._outcome and self._outcome[2]):
            if at is not None:
                d = max(0, ticks_diff(at, now))
                if best is None or d < best:
                    best = d
        return best

    # ---- the update this module takes -----------------------------------------

    def _from_parent(self, payload, now):
        if payload[0] == transfer.ANNOUNCE_MSG:
            session, targets = transfer.parse_announce(payload)
            self._adopt(session, targets, now)
            return
        session, seconds = transfer.parse_activate(payload)
        if session != self.session or self.activate_at is not None:
            return
        self.activate_at = ticks_add(now, seconds * 1000)
        if self.upstream is not None:  # the concentrator, which stays up
            self.ring_at = ticks_add(self.activate_at, SWITCH_STEP_MS)
        self.announce_gap = ANNOUNCE_MIN_MS  # pass the word on soon, and repeat it until the switch
        self.quiet = 0
        self.announce_at = ticks_add(now, self.st.rand.below(ANNOUNCE_MIN_MS))
        if self.done_at is not None and self.need_at is not None:
            self._schedule_need(now, self._wait_ms(now))

    def _wait_ms(self, now):
        """Until the next word to the parent while waiting to switch: WAIT_MS, or less to switch on time."""
        if self.activate_at is None:
            return WAIT_MS
        return max(0, min(WAIT_MS, ticks_diff(self._switch_at(), now)))

    def _switch_at(self):
        """This module's switching time: the agent's, plus SWITCH_STEP_MS for every hop from the concentrator."""
        return ticks_add(self.activate_at, min(self.st.routing.depth, MAX_HOPS) * SWITCH_STEP_MS)

    def _adopt(self, session, targets, now):
        if session == self.session and (targets is None or self.targets is not None):
            return  # the same announcement again
        if session != self.session:
            self.session = session
            self.children = {}
            self.requests = []
            self.carrying = self.finished = False
            self.done_at = self.reported = self.activate_at = None
            self.dones = 0
            # A module that runs this update already (it rebooted into it) only serves it, from its slot.
            self.running = self.upstream is None and self.store.updater.slots.load().seq & 0xFFFF == session
            self.finished = self.running
            self.store.expect(session)
            self.announce_gap = ANNOUNCE_MIN_MS
            self.quiet = 0
            self.announce_at = ticks_add(now, self.st.rand.below(ANNOUNCE_MIN_MS))
        if targets is not None and self.upstream is None:
            make_dirs(self.store.updater.slots.root)
            write_atomic(self._announce_path, transfer.announce(session, targets))
        self.targets = targets
        if self._wanted() and self.need_at is None and not self.finished:
            self._schedule_need(now, 0)

    def _saved_targets(self, session):
        try:
            saved, targets = transfer.parse_announce(read_file(self._announce_path))
        except (OSError, ProtocolError):
            return None
        return targets if saved == session else None

    def _for_me(self):
        return self.targets is not None and (not self.targets or self.st.addr in self.targets)

    def _wanted(self):
        """This station fetches the update: it is for it, a child needs it, or it is the concentrator."""
        return self._for_me() or self.carrying or self.upstream is not None

    def _ask_soon(self, now):
        """Ask right after the parent's burst, while it still listens (spread, for its other children)."""
        self.need_at = ticks_add(now, 1 + self.st.rand.below(CONTENTION_MS))
        self.need_guard = 0

    def _schedule_need(self, now, delay):
        """Ask at the parent's first upward sample after ``delay``."""
        at = ticks_add(now, delay)
        parent = self.st.routing.preferred
        self.need_guard = 0
        if self.upstream is None and parent is not None:  # at the parent's upward sample
            self.need_guard = guard = self.st._guard(parent.addr, at)
            wait = unicast_wait(parent.addr, self.st.net_phase(at) + guard)
            at = ticks_add(at, wait + self.st.rand.below(CONTENTION_MS))
        self.need_at = at

    def _ask(self, now):
        self.need_at = None
        depth = min(self.st.routing.depth, 0xFF)
        payload = self.store.need(depth)
        _, _, part, index, status, _ = transfer.parse(payload)
        if status == transfer.NEEDS:
            # the retry first: an answer (here or from upstream, which answers at once) asks on by itself;
            # a parent that does not hold the unit yet is asked less and less often
            self._schedule_need(now, ANSWER_MS + (SUPERFRAME_MS << min(self.unanswered, UNANSWERED_DOUBLINGS))
                                - SUPERFRAME_MS)
            self.unanswered += 1
        elif status == transfer.DONE and self.upstream is None:
            if self.done_at is None:
                self.done_at = now
            if self._with_all(now) or self._subtree_done(now) and self._alone(now):
                self._finish(now)
                return
            status = transfer.DONE if self._subtree_done(now) else transfer.WAIT
            payload = transfer.need(self.session, part, index, status, 0, depth)
            self._schedule_need(now, self._wait_ms(now))
        if self.upstream is not None:
            self.upstream(payload)
            return
        # A NEED the busy channel kept back is not repeated before the retry: another child is asking the
        # parent, and its answer is ours too.
        if not self._to_parent(payload, part, index, now) and (
                status != transfer.NEEDS or self.st.routing.preferred is None):
            self._schedule_need(now, SUPERFRAME_MS)
            return
        self.report(self.session, _STATES[status])

    def _to_parent(self, payload, part, index, now):
        parent = self.st.routing.preferred
        if parent is None:
            return False
        self.asked = (parent.addr, part, index)
        if not self._send(parent.addr, payload, now, False, self.need_guard):
            return False
        self.st.listen_for(now, ANSWER_MS)  # its burst comes GATHER_MS later, without a wake preamble
        return True

    def _fragment(self, session, part, index, number, data, now):
        if session != self.session or not self._wanted() or self.finished:
            return
        size = self.store.unit_size(part, index)
        self.unanswered = 0
        if self.store.on_fragment(session, part, index, number, data) is not None:
            self._ask_soon(now)  # a unit is complete: ask for the next one while the parent listens
            self._held(now)
        elif size is not None and number == (size - 1) // transfer.FRAGMENT:
            self._ask_soon(now)  # the parent's last fragment, and some were lost: ask for them now
        else:
            self.need_at = ticks_add(now, BURST_END_MS)  # more is on its way; silence ends the burst

    def report(self, session, state):
        """Tell the concentrator where this module stands (OTA_*), once per change, not for every page.

        Reports are not acknowledged end to end: an outcome (done, refused, installed, failed) is sent
        REPORT_REPEATS times, REPORT_GAP_MS apart, so that one lost on the way is not the last word.
        """
        if self.upstream is not None or state == self.reported:
            return
        self.reported = state
        d = self.store.updater.download
        missing = len(d.missing_pages()) if d.manifest is not None else 0
        if self._for_me() or state in (messages.OTA_INSTALLED, messages.OTA_FAILED):
            payload = messages.OtaStatus(session, state, missing).encode()
            self.st.uplink.send(payload)
            if state != messages.OTA_LOADING:  # holding the image, too: the agent switches the fleet on it
                self._outcome = [payload, REPORT_REPEATS - 1, ticks_add(self.st.hal.ticks_ms(), REPORT_GAP_MS)]

    def _report_again(self, now):
        outcome = self._outcome
        if outcome is None or ticks_diff(now, outcome[2]) < 0:
            return
        self.st.uplink.send(outcome[0])
        outcome[1] -= 1
        outcome[2] = ticks_add(now, REPORT_GAP_MS)
        if not outcome[1]:
            self._outcome = None

    # ---- the end ------------------------------------------------------------------

    def _subtree_done(self, now):
        """Every child said DONE or REFUSED, or went silent; a module without children waited QUIET_MS."""
        if not self.children and ticks_diff(now, self.done_at) < QUIET_MS:
            return False
        for status, at, _ in self.children.values():
            if status in (transfer.NEEDS, transfer.WAIT) and ticks_diff(now, at) < CHILD_LOST_MS:
                return False
        return True

    def _with_all(self, now):
        """This module's switching time has come, and it held the image before the agent's."""
        a = self.activate_at
        return a is not None and ticks_diff(now, self._switch_at()) >= 0 and ticks_diff(a, self.done_at) >= 0

    def _alone(self, now):
        """A module that completed after the agent's switching time, or heard none for long, switches alone."""
        a = self.activate_at
        return ticks_diff(now, self.done_at) >= SELF_ACTIVATE_MS if a is None else ticks_diff(self.done_at, a) > 0

    def _finish(self, now):
        """Install, or drop a carried copy; the host reboots into the trial image. A module switching alone
        first tells its parent DONE (DONE_REPEATS times: it is not acknowledged), which may wait for it."""
        if self.targets is None:  # whether to install is not known yet: the next announcement says
            self._schedule_need(now, WAIT_MS)
            return
        payload = transfer.need(self.session, transfer.IMAGE, 0, transfer.DONE, 0, min(self.st.routing.depth, 0xFF))
        if not self._with_all(now) and self._to_parent(payload, transfer.IMAGE, 0, now):
            self.dones += 1
        if self.dones < DONE_REPEATS and not self._with_all(now):
            self._schedule_need(now, SUPERFRAME_MS)
            return
        self.finished = True
        updater = self.store.updater
        if not self._for_me():
            updater.download.clear()
            return
        self.report(self.session, messages.OTA_DONE)
        try:
            updater.install()
        except AuthError:  # a page went bad in flash since it was checked: it is missing again, fetch it
            self.finished = False
            self.done_at = None
            self.dones = 0
            self._schedule_need(now, 0)
            return
        except ProtocolError:  # signed but unusable: the seq is refused from now on
            self.report(self.session, messages.OTA_FAILED)
            return
        if self.on_install is not None:
            self.on_install()

    # ---- the children's side ----------------------------------------------------

    def _announce(self, now):
        st = self.st
        if self.upstream is None and st.routing.preferred is None:
            self.announce_at = ticks_add(now, self.announce_gap)
            return
        # Every other announcement goes in the slot of our own depth: a child that chose us when we were a hop
        # nearer the concentrator still samples there until it hears of our new depth (our beacons go in the
        # other slot); without it, the chain below such a child never heard of the update.
        guard = self.slot_guard
        wait = slot_wait(st.routing.depth + 1 - (self.quiet & 1), st.net_phase(now) + guard)
        if wait and SUPERFRAME_MS - wait > 2 * CONTENTION_MS:  # not in the slot: wait for it
            self.slot_guard = st._guard(None, now)
            wait = slot_wait(st.routing.depth + 1 - (self.quiet & 1), st.net_phase(now) + self.slot_guard)
            self.announce_at = ticks_add(now, wait + st.rand.below(CONTENTION_MS))
            return
        a = self.activate_at
        if a is not None and ticks_diff(a, now) > 0:
            payload = transfer.activate(self.session, ticks_diff(a, now) // 1000)
        else:
            payload = transfer.announce(self.session, self.targets or ())
        if self._send(BROADCAST, payload, now, False, guard):
            self.announce_gap = min(self.announce_gap * 2, ANNOUNCE_MAX_MS)
            self.quiet += 1
        if self.quiet >= QUIET_ANNOUNCES:
            self.announce_at = None  # nobody asked for a while: stop spending air on it
            return
        self.announce_at = ticks_add(now, self.announce_gap + st.rand.below(self.announce_gap))

    def _request(self, child, session, part, index, status, have, depth, now):
        if session != self.session:
            return
        told = child in self.children and self.children[child][2]
        a = self.activate_at
        if not told and a is not None and ticks_diff(a, now) > 0:
            # the time to switch, to this child while it listens after its NEED: a child whose depth we do not
            # know right samples in another slot than our announcements'
            told = self._send(child, transfer.activate(session, ticks_diff(a, now) // 1000), now)
        elif status != transfer.NEEDS and self.running:
            # We rebooted into the update: the fleet has switched. This child holds the image and never heard
            # when (it missed our ACTIVATE before we switched, and would wait the 12 hours of SELF_ACTIVATE_MS
            # after we no longer announce it): it switches on its turn, counted from now. Told each time it
            # asks (every WAIT_MS until it switches), as nothing acknowledges the word.
            told = self._send(child, transfer.activate(session, 0), now)
        self.children[child] = [status, now, told]
        self.quiet = 0
        if status != transfer.NEEDS:
            if self.done_at is not None and self.need_at is not None:
                self._schedule_need(now, 0)  # a child finished: maybe the whole subtree did
            return
        held = self.store.unit(part, index) is not None
        if not held and not self._wanted():
            self.carrying = True  # a child needs it through us: fetch it for them
            self._schedule_need(now, 0)
        # Held: to the child at once, while it listens after its NEED. Not held yet: later, in the broadcast
        # slot where children a hop deeper than us sample, to all of them waiting for it; a child at another
        # depth (it chose us when we were deeper) asks again.
        if held:
            dst = child
        elif depth == self.st.routing.depth + 1:
            dst = BROADCAST
        else:
            return
        for r in self.requests:
            if r[0] == part and r[1] == index and r[3] == dst:
                r[2] |= ~have & 0xFF
                r[4] = now
                break
        else:
            self.requests.append([part, index, ~have & 0xFF, dst, now])
        if held and self.serve_at is None:
            self.serve_at = ticks_add(now, GATHER_MS)  # at once, while it listens

    def _held(self, now):
        """A unit came in: children waiting for it get it in their slot, where they sample anyway."""
        if self.serve_at is None:
            for r in self.requests:
                if self.store.unit(r[0], r[1]) is not None:
                    self.slot_guard = guard = self.st._guard(None, now)
                    wait = slot_wait(self.st.routing.depth + 1, self.st.net_phase(now) + guard)
                    self.serve_at = ticks_add(now, wait + self.st.rand.below(CONTENTION_MS))
                    return

    def _serve(self, now):
        """Send each unit asked for that this module holds, its missing fragments back to back.

        Called right after a NEED (only its children listen: the others' requests wait) or in the
        children's broadcast slot (every child waiting on a unit held since). A request for a unit
        not held yet waits; a burst the channel or the duty cycle cuts short is not resumed: its
        children ask again.
        """
        self.serve_at = None
        phase = self.st.net_phase(now) + self.slot_guard
        in_slot = slot_wait(self.st.routing.depth + 1, phase) > SUPERFRAME_MS - CONTENTION_MS - 1
        waiting = []
        sent = 0  # fragments of this burst so far; -1: the channel or the duty cycle ended it
        for r in self.requests:
            data = self.store.unit(r[0], r[1])
            if data is None or not in_slot and ticks_diff(now, r[4]) > GATHER_MS:
                if r[3] == BROADCAST:  # an answer to one child goes while it listens, or not at all
                    waiting.append(r)
            elif sent >= 0:
                sent = self._burst(r, data, now, sent, self.slot_guard if in_slot else 0)
        self.requests = waiting
        self._held(now)

    def _burst(self, r, data, now, sent, guard):
        """Send the fragments of ``data`` that request ``r`` asks for; the burst's count, -1 if it ended.

        Receivers woken by the burst's first frame stay awake while the channel is busy: the frames after
        it go without the wake preamble (F_FOLLOWS). A busy channel is sensed again CCA_TRIES times.
        """
        for payload in transfer.fragments(self.session, r[0], r[1], data, ~r[2] & 0xFF):
            for _ in range(CCA_TRIES):
                if self._send(r[3], payload, now, sent > 0, guard):
                    break
            else:
                return -1
            sent += 1
        return sent

    def _send(self, dst, payload, now, follows=False, guard=0):
        """Seal and send one OTA frame; ``guard``: its wake preamble's (rendezvous.guard), 0 to a listener."""
        st = self.st
        frame = st._seal(T_OTA | (F_FOLLOWS if follows else 0), dst, payload, st.net_key)
        preamble = guarded_preamble_ms(frame, guard)
        if st.duty.used_ms(now) + airtime_ms(frame, preamble) > OTA_AIR_MS:
            self.deferred += 1
            return False
        return st._transmit(frame, now, True, preamble)
