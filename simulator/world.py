"""The discrete-event world: nodes that run the real firmware, one shared channel.

Events are (time, seq, kind, data) in a heap: a node's wake-up (when its mesh
station or its application asked for one), the end of a transmission (when
receivers get the frame and react at once), and scheduled faults or
broadcasts. A sleeping node is only an entry in the heap, so idle nodes cost
nothing; pulses are generated lazily when a module wakes.

Time ``now`` is true seconds since ``epoch`` (unix seconds). Each node's own
clock runs ``ppm`` fast or slow (crystal tolerance +-20 ppm).

``run_district`` is the small, fast entry point for an end-to-end run with the
real module and collector firmware (docs/mesh.md).
"""

import hashlib
import heapq
import itertools
import math
import os
import random
import tempfile

import numpy as np

from firmware.common.cc1101 import SETTLE_US
from firmware.common.mesh.clock import TICKS_PERIOD
from firmware.common.mesh.control import ACK_LEN
from firmware.common.mesh.mac import (ACK_DELAY_MS, ACK_GUARD_MS, ACK_TIMEOUT_MS, BITRATE, BROADCAST_CHANNEL,
                                      PHY_OVERHEAD, SUPERFRAME_MS, airtime_us, frame_channel, unicast_channel,
                                      wake_preamble_ms)
from firmware.common.mesh.node import MeshNode
from firmware.common.mesh.root import MeshRoot
from protocol.ccm import TAG_LEN
from protocol.frame import BROADCAST, HEADER_LEN, L_MORE, O_HOPS, T_ACK, wants_ack
from simulator import radio
from simulator.energy import Meter
from simulator.hal_sim import SimHAL
from simulator.profiles import MeterSource

EPOCH = 1767571200  # 2026-01-05 00:00 UTC, a Monday
NET_ID = 0x4241
PPM = 20.0  # crystal tolerance
AIR_MEMORY_S = 0.2  # transmissions older than this cannot overlap a new one
MIN_WAKE_S = 0.001
SAMPLE_MS = SETTLE_US / 1000.0  # a sleeping receiver's sample: a wake preamble must be on the air at its end
ACK_DELAY_S = ACK_DELAY_MS / 1000.0  # an acknowledgement starts this long after the frame it answers (mac.py)
ACK_LATE_S = (ACK_DELAY_MS + ACK_GUARD_MS) / 1000.0  # later than this its addressee no longer listens
# After acknowledging a frame that said another follows (L_MORE), a board stays awake ACK_TIMEOUT_MS past its
# ACK (boardhal.py); after a frame that asks for no ACK, ACK_TIMEOUT_MS past the frame.
ACK_AIR_S = (HEADER_LEN + ACK_LEN + TAG_LEN + PHY_OVERHEAD) * 8.0 / BITRATE  # 30 bytes and the PHY's 10: 8.3 ms
BURST_AWAKE_S = ACK_DELAY_S + ACK_AIR_S + ACK_TIMEOUT_MS / 1000.0
FOLLOW_AWAKE_S = ACK_TIMEOUT_MS / 1000.0
ACK_WAIT_S = ACK_LATE_S + ACK_AIR_S  # after a frame that asks for an ACK its radio waits for it on that channel


def derive_key(seed, label, addr):
    """Provisioning: a 16-byte key per (seed, label, address), as the factory would write it."""
    return hashlib.sha256(b"%d/%s/%d" % (seed, label.encode(), addr)).digest()[:16]


class Tx:
    def __init__(self, sender, start, end, frame, preamble_ms, channel):
        self.sender = sender
        self.channel = channel
        self.start = start
        self.end = end
        self.frame = frame
        self.preamble_ms = preamble_ms  # its wake preamble, first on the air
        self.kind = frame[3] & 0x0F
        self.link_dst = frame[7] | (frame[8] << 8)


class Node:
    """One virtual device: its HAL, mesh station, application, meters and energy."""

    def __init__(self, world, index, addr):
        self.world = world
        self.index = index
        self.addr = addr
        self.is_root = index == 0
        self.ppm = world.rng.uniform(-PPM, PPM)
        self.alive = True
        self.hal = SimHAL(world, self)
        self.mesh = None
        self.app = None
        self.meter = Meter(always_on=self.is_root)
        self.wake_at = math.inf
        self.busy_until = 0.0
        self.last_tx = (0.0, 0.0)  # its latest transmission, for half-duplex
        self.awake_until = 0.0  # its receiver stays on after a frame of a burst (boardhal.py)
        self.awake_channel = 0  # on the channel of that frame
        self.ack_until = 0.0  # its receiver waits for an acknowledgement until then (boardhal.BoardHAL._wait_ack)
        self.ack_channel = 0  # on the channel of the frame sent
        self.listen_channel = BROADCAST_CHANNEL  # where it listens while always on (Station.listen_channel)
        self.own_channel = unicast_channel(addr)
        self.minute_tx = {}  # minute -> seconds on air
        self.pulse_handlers = {}
        self.sources = []
        self.joined_at = None
        self.app_due = None  # world time of the application's next tick
        self.searching_since = None  # world time since which it listens continuously for a parent


class World:
    def __init__(self, loss_db, seed=1, days=1.0, sigma_db=6.0, interference=0.05, flash_dir=None):
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.prng = random.Random(seed)
        self.loss_db = loss_db  # the scenario's path and obstruction losses (a moved node takes another's)
        self.channel = radio.Channel(loss_db, seed, sigma_db, interference)
        self.epoch = EPOCH
        self.now = 0.0
        self.end = days * 86400.0
        self._tmp = None
        if flash_dir is None:
            # in RAM where there is a tmpfs: every module checkpoints to flash, and a
            # disk-backed /tmp made those writes a tenth of a 240-node run's time
            ram = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
            self._tmp = tempfile.TemporaryDirectory(prefix="balans-sim-", dir=ram)
            flash_dir = self._tmp.name
        self.flash_dir = flash_dir
        self.net_key = derive_key(seed, "net", 0)
        self.heap = []
        self._seq = itertools.count(1)  # ties in time run in the order they were scheduled
        self.air = []
        self.nodes = [Node(self, i, i) for i in range(len(loss_db))]
        self.by_addr = {n.addr: n for n in self.nodes}
        # the (phase, channel) pairs each samples at (Station.sample_phases); (): always on, on its listen_channel
        self.samples = [()] * len(self.nodes)
        self.interference_boost = 0.0
        self.frames_by_kind = {}
        self.losses = {}  # why unicasts did not reach their addressee: cause -> count (diagnosis)
        self.on_link = None  # callable(bytes) for the concentrator's agent link
        self.listeners = []  # callables(event, **data) for metrics

    # ---- building -----------------------------------------------------------

    def module_key(self, addr):
        return derive_key(self.seed, "module", addr)

    def start_node(self, node, app_factory=None):
        """(Re)boot a node's firmware: a fresh mesh station and application over its flash."""
        node.alive = True
        node.hal.rx = []
        if node.is_root:
            keys = {n.addr: self.module_key(n.addr) for n in self.nodes[1:]}
            node.mesh = MeshRoot(node.hal, NET_ID, self.net_key, keys, seed=self.seed)
        else:
            node.mesh = MeshNode(node.hal, node.addr, NET_ID, self.net_key, self.module_key(node.addr),
                                 seed=self.seed)
        node.app = app_factory(node) if app_factory else None
        node.app_due = None
        if not node.is_root:  # without a parent yet its receiver stays on (a reboot forgets the old depth's slot)
            self.samples[node.index] = ()
            node.searching_since = self.now
        node.listen_channel = node.mesh.listen_channel()
        self.reschedule(node)

    # ---- the event loop ---------------------------------------------------------

    def at(self, t, kind, data=None):
        heapq.heappush(self.heap, (t, next(self._seq), kind, data))

    def run(self, until=None):
        until = self.end if until is None else until
        heap = self.heap
        while heap and heap[0][0] <= until:
            t, _, kind, data = heapq.heappop(heap)
            self.now = t
            if kind == "wake":
                node = data
                if node.wake_at == t and node.alive:
                    node.wake_at = math.inf
                    node.meter.wake()  # a timer woke the MCU (a frame's handling is charged with the frame)
                    self.run_node(node)
            elif kind == "txend":
                self._tx_end(data)
            else:
                kind(self, data)
        self.now = max(self.now, until)

    def run_node(self, node):
        """Wake a node's firmware: its application if due, then its mesh station."""
        if node.searching_since is not None:
            node.meter.search(self.now - node.searching_since)
            node.searching_since = None
        app = node.app
        if app is not None and self.now >= node.app_due - 1e-6:
            if not node.is_root:
                self.feed_pulses(node)
            app.tick()
            node.app_due = None
        mesh = node.mesh
        mesh.poll()
        samples = mesh.sample_phases()
        if not samples and not node.is_root:
            node.searching_since = self.now  # no parent: the receiver stays on until one is found
        dense = len(samples) > 2  # a second broadcast slot (mac.broadcast_depths)
        if dense != (len(self.samples[node.index]) > 2):
            node.meter.second_sample(self.now, dense)
        self.samples[node.index] = samples
        node.listen_channel = mesh.listen_channel()
        if node.joined_at is None and not node.is_root and node.mesh.joined:
            node.joined_at = self.now
            self.emit("joined", node=node)
        self.reschedule(node)

    def reschedule(self, node):
        if not node.alive:
            return
        rate = node.hal.rate
        best = math.inf
        ms = node.mesh.wakeup_in_ms()
        if ms is not None:
            wait = ms / 1000.0 / rate
            # counted from the node's own time: past its radio's work in hand (hal_sim.SimHAL.ticks_ms)
            best = max(self.now, node.busy_until) + (wait if wait > MIN_WAKE_S else MIN_WAKE_S)
        app = node.app
        if app is not None:
            if node.app_due is None:  # the application asked at its last tick; ask again after each
                wait = (app.next_wakeup() - node.hal.unix_seconds()) / rate
                if node.is_root:
                    wait = min(wait, getattr(app, "TICK_S", 1.0))
                node.app_due = self.now + max(wait, MIN_WAKE_S)
            if node.app_due < best:
                best = node.app_due
        if best != node.wake_at:
            node.wake_at = best
            if best < math.inf:
                self.at(best, "wake", node)

    # ---- the air --------------------------------------------------------------------

    def transmit(self, node, frame, cca=True, preamble_ms=None):
        """A node's radio sends ``frame`` after a wake preamble of ``preamble_ms`` (None: the frame's shortest):
        False if ``cca`` and the channel is busy (carrier sense)."""
        if not node.alive:
            return False
        # An acknowledgement goes ACK_DELAY_MS after the frame it answers, as the board sends it (mac.py).
        ack = frame[3] & 0x0F == T_ACK
        start = max(self.now + (ACK_DELAY_S if ack else 0.0), node.busy_until)
        if ack and start > self.now + ACK_LATE_S:
            # Still sending an earlier one: the frame's sender gave up listening ACK_GUARD_MS after it was due,
            # and a late ACK would set its clock wrong. The board does not send it either (boardhal.py).
            self._refused(frame, "late")
            return False
        ch = self.channel
        channel = frame_channel(frame)
        for tx in self.air if cca else ():
            if tx.start <= start < tx.end and tx.sender != node.index:
                p = ch.power(tx.sender, node.index, start)
                if p is not None and p - radio.rejection_db(tx.channel, channel) > radio.CCA_DBM:
                    self._refused(frame, "cca_busy")
                    return False
        if cca and ch.outside_burst_dbm(0.0, self.interference_boost) is not None:
            self._refused(frame, "cca_outside")
            return False  # outside interference on the channel right now
        if preamble_ms is None:
            preamble_ms = wake_preamble_ms(frame)
        duration = airtime_us(frame, preamble_ms) / 1e6
        tx = Tx(node.index, start, start + duration, frame, preamble_ms, channel)
        self.air.append(tx)
        node.busy_until = tx.end
        if wants_ack(frame):
            node.ack_until = tx.end + ACK_WAIT_S
            node.ack_channel = channel
        node.last_tx = (self.now, tx.end)  # it does not listen while its radio waits to send (boardhal.radio_send)
        what = "tx ack" if tx.kind == T_ACK else "tx broadcast" if tx.link_dst == BROADCAST else "tx unicast"
        node.meter.transmit(duration, wants_ack(frame), what, preamble_ms / 1000.0)
        minute = int(start // 60)
        node.minute_tx[minute] = node.minute_tx.get(minute, 0.0) + duration
        self.frames_by_kind[tx.kind] = self.frames_by_kind.get(tx.kind, 0) + 1
        self.at(tx.end, "txend", tx)
        return True

    def _tx_end(self, tx):
        now = self.now
        self.air = [a for a in self.air if a.end > now - AIR_MEMORY_S]
        ch = self.channel
        sender = tx.sender
        if tx.link_dst == BROADCAST:
            heard = [r for r in ch.audience[sender]]
        else:
            target = self.by_addr.get(tx.link_dst)
            heard = [target.index] if target is not None and sender in ch.neighbours[target.index] else []
        receivers, woke = [], []  # who listens when the frame starts, and how far into it each woke
        for r in heard:
            w = self._wakes(r, tx)
            if w is not None:
                receivers.append(r)
                woke.append(w)
            elif tx.link_dst != BROADCAST:
                self._lost(tx, "asleep")
        if not receivers:
            return
        start, end = tx.start, tx.end
        # what overlaps this frame is the same for every receiver (frames sent while the
        # receivers react start at or after its end)
        overlapping = [o for o in self.air if o is not tx and o.start < end and o.end > start]
        nbytes = len(tx.frame) + PHY_OVERHEAD
        duration = end - start
        what = "rx ack" if tx.kind == T_ACK else "rx broadcast" if tx.link_dst == BROADCAST else "rx unicast"
        awake = tx.end + (BURST_AWAKE_S if tx.frame[O_HOPS] & L_MORE else 0.0) if wants_ack(tx.frame) else \
            tx.end + FOLLOW_AWAKE_S
        preamble = tx.preamble_ms / 1000.0
        nodes = self.nodes
        power = ch.power
        for r, w in zip(receivers, woke):
            rn = nodes[r]
            if not rn.alive or not rn.hal.listening:
                continue
            s, e = rn.last_tx
            if s < end and e > start:
                self._lost(tx, "half_duplex")
                continue  # half-duplex: it was transmitting
            signal = power(sender, r, start)
            others = []
            for o in overlapping:
                if o.sender != r:
                    p = power(o.sender, r, o.start)
                    if p is not None:
                        others.append(p if o.channel == tx.channel else p - radio.rejection_db(o.channel, tx.channel))
            burst = ch.outside_burst_dbm(duration, self.interference_boost)
            if burst is not None:
                others.append(burst)
            rn.meter.receive(duration - w, what, preamble - w)  # its receiver is on from its sample
            if ch.received(signal, others, nbytes):
                if tx.kind == T_ACK:
                    rn.ack_until = 0.0  # the exchange is over: back to sampling (boardhal.BoardHAL._take_frame)
                elif awake > rn.awake_until:
                    rn.awake_until = awake
                    rn.awake_channel = tx.channel
                rn.hal.rx.append((tx.frame, int(round(signal))))
                self.run_node(rn)
            else:
                self._lost(tx, "outside" if burst is not None else "collision" if len(others) else "weak")

    def _wakes(self, r, tx):
        """Seconds into ``tx`` at which receiver ``r``'s receiver is on, on the frame's channel; None if it sleeps
        through the frame or listens on another channel.

        0 if it listens all along on that channel: it waits for an ACK on the channel of the frame it sent, it is
        awake after a frame of a burst, it always listens (the concentrator, a module without a parent: on its
        listen channel), or the frame has no wake preamble (a burst's next frame to a listening receiver: on
        its unicast channel). Otherwise it must sample that channel while the wake preamble is on the air: the
        sample's carrier check ends inside the preamble (boardhal.BoardHAL._sample).
        """
        rn = self.nodes[r]
        start = tx.start
        if rn.ack_until > start:
            return 0.0 if tx.channel == rn.ack_channel else None
        if rn.awake_until > start:
            return 0.0 if tx.channel == rn.awake_channel else None
        phases = self.samples[r]
        if not phases:
            return 0.0 if tx.channel == rn.listen_channel else None
        preamble_ms = tx.preamble_ms
        if not preamble_ms:
            return 0.0 if tx.channel == rn.own_channel else None
        hal = rn.hal
        ticks = hal.clock_ms(start)  # its clock when the frame starts
        position = (ticks + rn.mesh.cycle.offset(int(ticks) % TICKS_PERIOD)) % SUPERFRAME_MS
        for p, channel in phases:
            if channel == tx.channel:
                ahead = (p + SAMPLE_MS - position) % SUPERFRAME_MS  # from the frame's start to the sample's end
                if ahead <= preamble_ms:
                    return max(0.0, ahead - SAMPLE_MS) / 1000.0
        return None

    def _refused(self, frame, cause):
        key = (frame[3] & 0x0F, cause)
        self.losses[key] = self.losses.get(key, 0) + 1

    def _lost(self, tx, cause):
        if tx.link_dst != BROADCAST:
            key = (tx.kind, cause)
            self.losses[key] = self.losses.get(key, 0) + 1

    # ---- meters and the agent link ---------------------------------------------------

    def feed_pulses(self, node):
        """Deliver every pulse up to now to the module's interrupt handlers."""
        until = self.epoch + self.now  # pulses happen in true time
        for channel, source in enumerate(node.sources):
            start = max(source.until, self.epoch)
            if until <= start:
                continue
            handler = node.pulse_handlers.get(channel)
            times = source.pulses(start, until, self.rng)
            source.until = until
            if times:
                self.emit("pulses", node=node, channel=channel, times=times)
            if handler is not None and times:
                for tick in node.hal.ticks_at(np.array(times) - self.epoch):
                    handler(channel, tick)

    def give_meters(self, node, kinds=(0, 1, 2)):
        node.sources = [MeterSource(k, self.rng) for k in kinds]

    def link_output(self, node, data):
        self.emit("link", node=node, data=data)
        if self.on_link is not None:
            self.on_link(data)

    def emit(self, event, **data):
        for listener in self.listeners:
            listener(event, **data)

    # ---- faults --------------------------------------------------------------------

    def kill(self, node):
        node.alive = False
        node.wake_at = math.inf
        self.emit("died", node=node)

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

