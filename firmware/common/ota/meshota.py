"""An update carried hop by hop in a mesh station's T_OTA frames (docs/ota.md, "Over the mesh").

The station hands every T_OTA frame to ``station.ota`` (a MeshOta) and polls
it with its timers. Each hop runs the messages of ota/transfer.py:

- ANNOUNCE goes from a parent to its children: update ``session`` exists,
  for these modules or all. Every module passes it on to its own children,
  with Trickle-like doubling pauses, so the whole tree learns of it.
- A module the update is for asks its preferred parent for the first unit it
  lacks (NEED). A module it is not for starts asking only when a child asks
  it: it carries the update for them and drops its copy afterwards.
- The parent answers in its children's sample slot with up to BURST
  fragments of the unit, sent to BROADCAST, so every child asking for the
  same unit takes them at once (a child whose depth is not the parent's + 1
  samples in another slot and gets its own, unicast); ``have`` in NEED
  spares what they hold.
- A child takes fragments only from the parent it asked; its Receiver
  checks each page against the signed table before it keeps or serves it.

Frames are link-local and sealed under the network key: the update's own
signature and page hashes make it trustworthy, not the frame. Timing is the
MAC's (mesh/mac.py): NEEDs go at the parent's upward sample, fragments at the
children's downward one, one burst per superframe; a woken receiver stays
awake while the channel is busy, and three 64-byte frames fit its 100 ms
slot. OTA frames may use at most half the duty-cycle budget, so reports and
routing keep theirs; a module whose battery is below the update's floor
refuses it (Updater.offer) and stops serving.

Completion runs bottom-up, so that no relay reboots while a module below it
still needs it (or its route): a module holding every page answers WAIT while
a child of it still asks, and DONE once every child said DONE (or fell silent
for CHILD_LOST_MS: it found another parent); then it installs and reboots (a
module the update is not for drops its carried copy). A module that never
heard a child waits QUIET_MS for latecomers first.
"""

from protocol import messages
from protocol.compat import const
from protocol.errors import AuthError, ProtocolError
from protocol.frame import BROADCAST, T_OTA

from firmware.common.mesh.clock import ticks_add, ticks_diff
from firmware.common.mesh.duty import LIMIT_MS
from firmware.common.mesh.mac import CONTENTION_MS, SUPERFRAME_MS, airtime_ms, slot_wait, unicast_wait
from firmware.common.ota import transfer
from firmware.common.ota.slots import make_dirs, read_file, write_atomic

BURST = const(3)  # fragments per slot: 3 x 26 ms of 64-byte frames with preamble fit the 100 ms slot
OTA_AIR_MS = LIMIT_MS // 2  # at most half the hour's 10 %: reports and routing keep the rest
ANNOUNCE_MIN_MS = const(4000)
ANNOUNCE_MAX_MS = const(64000)  # a module that lost its RAM in a power cut soon hears whom the update is for
NEED_RETRY_MS = 3 * SUPERFRAME_MS  # no fragment for this long: ask again (a burst comes every superframe)
WAIT_MS = const(20000)  # a module waiting for its children tells its parent this often
CHILD_LOST_MS = const(300000)  # a child silent this long went to another parent (or is dead: a power cut is shorter)
QUIET_MS = const(60000)  # a module that never heard a child waits this long for late ones
REPORT_REPEATS = const(3)
REPORT_GAP_MS = const(600000)
DONE_REPEATS = const(3)  # DONE goes up this many times, a superframe apart, before the module reboots
QUIET_ANNOUNCES = const(12)  # announcements without a request from a child after which a module stops (~20 min)
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
        self.children = {}  # addr -> [last NEED status, tick]
        self.requests = []  # [part, index, fragment bits still to send, link destination, its depth], lowest first
        self.asked = None  # (parent, part, index) of the last NEED: fragments are taken for it only
        self.need_at = None  # tick of the next NEED
        self.serve_at = None  # tick of the next burst
        self.announce_at = None
        self.announce_gap = ANNOUNCE_MIN_MS
        self.quiet = 0  # announcements since a child last asked
        self.dones = 0  # DONEs sent to the parent
        self.done_at = None  # tick this module first held every page
        self.reported = None  # the last OTA_STATUS state sent up
        self._outcome = None  # [payload, repeats left, tick of the next]: an outcome is reported again
        self.finished = False
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
        payload = fr.payload
        parent = st.routing.preferred
        try:
            if payload[0] == transfer.ANNOUNCE_MSG:
                if self.upstream is None and parent is not None and f.link_src == parent.addr:
                    session, targets = transfer.parse_announce(payload)
                    self._adopt(session, targets, now)
                return
            kind, session, part, index, sub, data = transfer.parse(payload)
        except ProtocolError:
            return
        if kind == transfer.FRAGMENT_MSG:
            if self.asked == (f.link_src, part, index):
                self._fragment(session, part, index, sub, data, now)
        elif fr.dst == st.addr:
            self._request(fr.src, session, part, index, sub, data[0], data[1], now)

    def from_upstream(self, payload, now):
        """An ANNOUNCE or FRAGMENT from the edge agent (the concentrator's parent)."""
        try:
            if payload[:1] == bytes((transfer.ANNOUNCE_MSG,)):
                session, targets = transfer.parse_announce(payload)
                self._adopt(session, targets, now)
                return
            kind, session, part, index, sub, data = transfer.parse(payload)
        except ProtocolError:
            return
        if kind == transfer.FRAGMENT_MSG:
            self._fragment(session, part, index, sub, data, now)

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

    def due_in(self, now):
        best = None
        for at in (self.announce_at, self.serve_at, self.need_at, self._outcome and self._outcome[2]):
            if at is not None:
                d = max(0, ticks_diff(at, now))
                if best is None or d < best:
                    best = d
        return best

    # ---- the update this module takes -----------------------------------------

    def _adopt(self, session, targets, now):
        if session == self.session and (targets is None or self.targets is not None):
            return  # the same announcement again
        if session != self.session:
            self.session = session
            self.children = {}
            self.requests = []
            self.carrying = self.finished = False
            self.done_at = self.reported = None
            self.dones = 0
            # A module that runs this update already (it rebooted into it) only serves it, from its slot.
            self.finished = self.upstream is None and self.store.updater.slots.load().seq & 0xFFFF == session
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

    def _schedule_need(self, now, delay):
        at = ticks_add(now, delay)
        parent = self.st.routing.preferred
        if self.upstream is None and parent is not None:  # at the parent's upward sample
            wait = unicast_wait(parent.addr, self.st.net_phase(at))
            at = ticks_add(at, wait + self.st.rand.below(CONTENTION_MS))
        self.need_at = at

    def _ask(self, now):
        self.need_at = None
        depth = min(self.st.routing.depth, 0xFF)
        payload = self.store.need(depth)
        _, _, part, index, status, _ = transfer.parse(payload)
        if status == transfer.NEEDS:
            # the retry first: an upstream that answers at once schedules the next NEED itself
            self._schedule_need(now, NEED_RETRY_MS)
        elif status == transfer.DONE and self.upstream is None:
            if self.done_at is None:
                self.done_at = now
            if self._subtree_done(now):
                self._finish(now)
                return
            payload = transfer.need(self.session, part, index, transfer.WAIT, 0, depth)
            status = transfer.WAIT
            self._schedule_need(now, WAIT_MS)
        if self.upstream is not None:
            self.upstream(payload)
            return
        if not self._to_parent(payload, part, index, now):
            self._schedule_need(now, SUPERFRAME_MS)
            return
        self.report(self.session, _STATES[status])

    def _to_parent(self, payload, part, index, now):
        parent = self.st.routing.preferred
        if parent is None or not self._send(parent.addr, payload, now):
            return False
        self.asked = (parent.addr, part, index)
        return True

    def _fragment(self, session, part, index, number, data, now):
        if session != self.session or not self._wanted() or self.finished:
            return
        size = self.store.unit_size(part, index)
        if self.store.on_fragment(session, part, index, number, data) is not None:
            self._schedule_need(now, 0)  # a unit is complete: ask for the next one in the coming slot
        elif size is not None and number == (size - 1) // transfer.FRAGMENT:
            self._schedule_need(now, 0)  # the parent's last fragment, and some were lost: ask for them now
        else:
            self._schedule_need(now, NEED_RETRY_MS)  # more of this unit is on its way

    def report(self, session, state):
        """Tell the concentrator where this module stands (OTA_*), once per change, not for every page.

        Reports are not acknowledged end to end: an outcome (refused, installed, failed) is sent
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
            if state in (messages.OTA_REFUSED, messages.OTA_INSTALLED, messages.OTA_FAILED):
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
        for status, at in self.children.values():
            if status in (transfer.NEEDS, transfer.WAIT) and ticks_diff(now, at) < CHILD_LOST_MS:
                return False
        return True

    def _finish(self, now):
        """Tell the parent DONE (DONE_REPEATS times: it is not acknowledged), then install, or drop a carried
        copy; the host reboots into the trial image."""
        if self.targets is None:  # whether to install is not known yet: the next announcement says
            self._schedule_need(now, WAIT_MS)
            return
        payload = transfer.need(self.session, transfer.IMAGE, 0, transfer.DONE, 0, min(self.st.routing.depth, 0xFF))
        if self._to_parent(payload, transfer.IMAGE, 0, now):
            self.dones += 1
        if self.dones < DONE_REPEATS:
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
        wait = slot_wait(st.routing.depth + 1, st.net_phase(now))
        if wait and SUPERFRAME_MS - wait > 2 * CONTENTION_MS:  # not in the children's slot: wait for it
            self.announce_at = ticks_add(now, wait + st.rand.below(CONTENTION_MS))
            return
        if self._send(BROADCAST, transfer.announce(self.session, self.targets or ()), now):
            self.announce_gap = min(self.announce_gap * 2, ANNOUNCE_MAX_MS)
            self.quiet += 1
        if self.quiet >= QUIET_ANNOUNCES:
            self.announce_at = None  # nobody asked for a while: stop spending air on it
            return
        self.announce_at = ticks_add(now, self.announce_gap + st.rand.below(self.announce_gap))

    def _request(self, child, session, part, index, status, have, depth, now):
        if session != self.session:
            return
        self.children[child] = [status, now]
        self.quiet = 0
        if status != transfer.NEEDS:
            if self.done_at is not None and self.need_at is not None:
                self._schedule_need(now, 0)  # a child finished: maybe the whole subtree did
            return
        data = self.store.unit(part, index)
        if data is None:
            if not self._wanted():
                self.carrying = True  # a child needs it through us: fetch it for them
                self._schedule_need(now, 0)
            return  # it asks again once we hold the unit
        want = ((1 << ((len(data) + transfer.FRAGMENT - 1) // transfer.FRAGMENT)) - 1) & ~have
        # Children sample in the slot of their own depth, usually ours + 1: those share one broadcast burst;
        # a child at another depth (it chose us when we were deeper) gets its own, in its slot.
        dst = BROADCAST if depth == self.st.routing.depth + 1 else child
        for r in self.requests:
            if r[0] == part and r[1] == index and r[3] == dst:
                r[2] |= want
                break
        else:
            self.requests.append([part, index, want, dst, depth])
            self.requests.sort()
        if self.serve_at is None:
            self._schedule_serve(now)

    def _schedule_serve(self, now):
        st = self.st
        wait = slot_wait(self.requests[0][4], st.net_phase(now))
        self.serve_at = ticks_add(now, (wait or SUPERFRAME_MS) + st.rand.below(CONTENTION_MS))

    def _serve(self, now):
        """One burst of the lowest unit asked for, in the slot the request was scheduled for."""
        self.serve_at = None
        r = self.requests[0] if self.requests else None
        data = None if r is None else self.store.unit(r[0], r[1])
        if data is not None:
            sent = 0
            for payload in transfer.fragments(self.session, r[0], r[1], data, ~r[2] & 0xFF):
                if sent == BURST or not self._send(r[3], payload, now):
                    break
                r[2] &= ~(1 << payload[6])
                sent += 1
        if r is not None and (data is None or not r[2]):
            self.requests.pop(0)
        if self.requests:
            self._schedule_serve(now)

    def _send(self, dst, payload, now):
        st = self.st
        frame = st._seal(T_OTA, dst, payload, st.net_key)
        if st.duty.used_ms(now) + airtime_ms(frame) > OTA_AIR_MS:
            self.deferred += 1
            return False
        return st._transmit(frame, now)
