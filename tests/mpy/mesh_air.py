"""Real mesh stations (MeshRoot and MeshNode) on one lossless channel, on MicroPython and CPython alike.

The air knows only who hears whom: a frame sent reaches every listening
station linked to the sender at once. Loss, collisions and the MAC's timing
are the simulator's (tests/test_mesh.py); here the firmware's logic runs on
the interpreter the modules run. Time jumps from one station's wake-up to
the next.
"""

import os

from firmware.common.mesh.node import MeshNode
from firmware.common.mesh.root import MeshRoot
from firmware.common.ota.slots import make_dirs, remove_tree

NET_ID = 0x4241
NET_KEY = b"network-key-0123"
_RUN = int.from_bytes(os.urandom(4), "little")  # MicroPython has no getpid: runs sharing /tmp stay apart


def module_key(addr):
    return bytes([addr & 0xFF]) * 16


class AirHAL:
    """The part of firmware/common/hal.py a mesh station uses."""

    def __init__(self, air, addr):
        self.air = air
        self.addr = addr
        self.rx = []
        self.flash = "/tmp/mesh-air-%08x-%d" % (_RUN, addr)
        remove_tree(self.flash)
        make_dirs(self.flash)

    def ticks_ms(self):
        return self.air.now

    def flash_path(self):
        return self.flash

    def radio_listen(self):
        pass

    def radio_send(self, frame, cca=True, preamble_ms=None):
        self.air.carry(self.addr, bytes(frame))
        return True

    def radio_receive(self):
        return self.rx.pop(0) if self.rx else None

    def radio_rssi(self):
        return -60


class Air:
    """Station 0 is the concentrator; ``links`` are pairs of addresses that hear each other."""

    def __init__(self, links):
        self.now = 0
        self.hears = {}
        for a, b in links:
            self.hears.setdefault(a, []).append(b)
            self.hears.setdefault(b, []).append(a)
        addrs = sorted(a for a in self.hears if a)
        self.dead = []
        self.lose = None  # (sender, receiver, frame) -> True to lose that frame on its way
        self.up = []  # (src, payload) handed to the collector
        self.heard = {}  # addr -> commands handed to the module
        self.broadcasts = {}  # addr -> broadcasts handed to the module
        self.root = MeshRoot(AirHAL(self, 0), NET_ID, NET_KEY, {a: module_key(a) for a in addrs})
        self.root.on_uplink = lambda src, payload, backfill=False: self.up.append((src, payload))
        self.stations = {0: self.root}
        for a in addrs:
            node = MeshNode(AirHAL(self, a), a, NET_ID, NET_KEY, module_key(a), seed=1)
            node.on_downlink = self._recorder(self.heard, a)
            node.on_broadcast = self._recorder(self.broadcasts, a)
            self.stations[a] = node

    @staticmethod
    def _recorder(book, addr):
        def hand(payload):
            book.setdefault(addr, []).append(payload)
        return hand

    def carry(self, sender, frame):
        for addr in self.hears[sender]:
            if addr not in self.dead and not (self.lose is not None and self.lose(sender, addr, frame)):
                self.stations[addr].hal.rx.append(frame)

    def run(self, ms):
        """Let ``ms`` milliseconds pass: every station polled when a frame reaches it or it asked to be."""
        end = self.now + ms
        while True:
            polled = True
            while polled:  # frames sent while polling reach their receivers at the same instant
                polled = False
                for addr, s in self.stations.items():
                    if addr not in self.dead and (s.hal.rx or s.wakeup_in_ms() == 0):
                        s.poll()
                        polled = True
            waits = [s.wakeup_in_ms() for a, s in self.stations.items() if a not in self.dead]
            step = min([w for w in waits if w is not None] + [end - self.now])
            if step <= 0 and self.now >= end:
                return
            self.now += max(1, step)
