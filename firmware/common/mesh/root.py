"""The concentrator's mesh station: the root of the tree, always listening.

Opens every module's frames with that module's key, refuses replays, hands
reports to the collector and sends its commands and broadcasts down::

    root = MeshRoot(hal, net_id, net_key, module_keys)
    collector = Collector(hal, config, root.downlink)
    root.on_uplink = collector.on_uplink          # (src, payload, backfill=False)

Each boot starts a new network generation (``version``, kept in flash): every
module re-selects parents and rejoins, which rebuilds the downward routes the
restart lost.
"""

import struct

from protocol.compat import const
from protocol.errors import ProtocolError
from protocol.frame import BROADCAST, CONCENTRATOR, F_ACK_REQ, F_BACKFILL, T_BCAST, T_DATA, T_JOIN

from firmware.common.mesh import control
from firmware.common.mesh.seen import KeptWindow
from firmware.common.mesh.station import Station

ROOT_QUEUE = const(256)  # a cold start answers every module's join at once
MAX_MODULES = const(1024)  # replay windows kept: 240 modules a network, with room to grow
SEEN_SAVE_MS = const(600000)  # the highest counters go to flash at most every 10 min (firmware/common/mesh/seen.py)
# Children that chose the concentrator as preferred parent, each owed an acknowledged copy of every broadcast:
# any module of a network may be one. With a module's 64 (station.MAX_FOLLOWERS), the block's first ring (64-68
# of 240) filled the table, and the children left out got no copy when the flood missed them: on 2 of 6 days
# traced, the day's only missed broadcast (balans simulate --scenario block, seeds 2 and 12).
ROOT_FOLLOWERS = const(240)


class Downlink:
    """What the collector sees of the mesh: commands to one module, broadcasts to all."""

    def __init__(self, root):
        self._root = root

    def send(self, dst_addr, payload):
        """Queue ``payload`` for module ``dst_addr``; False if no route is known yet or the queue is full."""
        return self._root.send_down(dst_addr, payload)

    def broadcast(self, payload, group=None):
        """Flood ``payload`` to every module. Group filtering is the message's own (GroupCmd.group)."""
        return self._root.broadcast(payload)


class MeshRoot(Station):
    def __init__(self, hal, net_id, net_key, module_keys, seed=0):
        Station.__init__(self, hal, CONCENTRATOR, net_id, net_key, seed)
        self.module_keys = module_keys  # addr -> 16-byte key (a dict, or anything with .get)
        self.downlink = Downlink(self)
        self.on_uplink = None  # (src, payload, backfill=False)
        self.members = {}  # addr -> tick of its last join
        self._window = KeptWindow(hal.flash_path() + "/mesh_seen", MAX_MODULES, SEEN_SAVE_MS, hal.ticks_ms())
        r = self.routing
        r.version = self._next_version(hal.flash_path() + "/mesh_version")
        r.rank = 0
        r.depth = 0
        r.anchor = True
        self.queue_max = ROOT_QUEUE
        self.followers_max = ROOT_FOLLOWERS
        self.trickle.reset(hal.ticks_ms())

    @staticmethod
    def _next_version(path):
        try:
            with open(path) as f:
                version = (int(f.read()) + 1) & 0xFF
        except (OSError, ValueError):
            version = 0
        with open(path, "w") as f:
            f.write(str(version))
        return version

    def send_down(self, dst, payload):
        key = self.module_keys.get(dst)
        if key is None or dst not in self.routes:
            return False
        return self.enqueue(self._seal(T_DATA | F_ACK_REQ, dst, payload, key), False)

    def broadcast(self, payload):
        now = self.hal.ticks_ms()
        frame = bytearray(self._seal(T_BCAST, BROADCAST, payload, self.net_key))
        counter = struct.unpack_from("<I", frame, 13)[0]
        self._start_broadcast(counter, frame, now)
        return True

    def _routing_changed(self, now):
        """The root's rank never changes; failed downward hops only cost routes."""

    def _relay(self, buf, f, now):
        return False  # everything upward ends here; the root originates everything downward

    def _open_own(self, buf, f):
        key = self.module_keys.get(f.src)
        if key is None:
            return None
        fr = self._open(buf, key)
        if fr is not None:
            self._learn_route(f.src, f.link_src)
        return fr

    def _fresh(self, fr):
        try:
            self._window.accept(fr.src, fr.counter, self.hal.ticks_ms())
        except ProtocolError:
            return False
        return True

    def _deliver_own(self, fr, f, now):
        if fr.kind == T_JOIN or fr.kind == T_DATA and fr.src not in self.members:
            # A module's first report of this generation is answered as its request would be: on a cold start
            # every module's boot reports go up anyway, and its own request then waits (node.py, JOIN_RETRY_MS).
            self._answer_join(fr.src, now)
        if fr.kind == T_DATA and self.on_uplink is not None:
            self.on_uplink(fr.src, fr.payload, backfill=bool(fr.ftype & F_BACKFILL))

    def _answer_join(self, src, now):
        self.members[src] = now
        for job in self.queue + self.paused:
            if job.dst == src and job.frame[3] & 0x0F == T_JOIN:
                return  # an answer is already on its way
        payload = struct.pack(control.ANSWER_FMT, control.JOIN_OK, self.routing.version & 0xFF)
        self.enqueue(self._seal(T_JOIN | F_ACK_REQ, src, payload, self.module_keys.get(src)), False, True)

    def _deliver_broadcast(self, payload, now):
        """Only the root originates broadcasts; it never delivers one."""
