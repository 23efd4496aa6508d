"""A small world for edge-agent tests: a J100UC collector on a thread, wired to an agent by a Pipe."""

import os
import sys
import threading
import time

from firmware.j100uc.collector import Collector
from edge_agent.linkport import Pipe
from protocol import messages
from balans.toolchain import REPO

sys.path.insert(0, str(REPO / "tests" / "mpy"))
from j100uc_bench import Downlink, BenchHAL  # noqa: E402

H = 490000


class PipeHAL(BenchHAL):
    def __init__(self, flash, pipe):
        super().__init__(flash)
        self.pipe = pipe
        self.unix = H * 3600

    def ticks_ms(self):
        return int(time.monotonic() * 1000)

    def link_write(self, data):
        return self.pipe.concentrator_end.write(data)

    def link_read(self):
        return self.pipe.concentrator_end.read_all()


class Concentrator:
    """The collector ticking every 20 ms on its own thread, as the MCU's main loop would."""

    def __init__(self, tmp_path, pipe, modules):
        flash = str(tmp_path / "flash")
        os.makedirs(flash, exist_ok=True)
        self.hal = PipeHAL(flash, pipe)
        self.down = Downlink()
        self.config = {"net_id": 1, "site": "s1", "conc": "c-0001", "hold_records": 8192,
                       "modules": {a: ["electricity", "water", None] for a in modules}}
        self.lock = threading.Lock()
        self.collector = Collector(self.hal, self.config, self.down)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            with self.lock:
                self.collector.tick()
            time.sleep(0.02)

    def report(self, addr, hour, totals):
        with self.lock:
            self.collector.on_uplink(addr, messages.Hourly(hour, 0, 150, 0x31, totals, (0xFFFF,) * 6).encode())

    def restart(self):
        """Power cycle: RAM is gone, flash stays."""
        with self.lock:
            self.collector = Collector(self.hal, self.config, self.down)

    def stop(self):
        self._stop.set()
        self._thread.join()


def new_pipe():
    return Pipe()


def expected_readings(modules, hours):
    """The readings Concentrator.report(addr, H+h, totals(addr, h)) produces."""
    out = {}
    for a in modules:
        for h in hours:
            e, w = totals(a, h)[:2]
            out[("%04x.0" % a, (H + h) * 3600, "1-0:1.8.0")] = e
            out[("%04x.1" % a, (H + h) * 3600, "8-0:1.0.0")] = w
    return out


def totals(addr, h):
    return (1000 * addr + 37 * h, 10 * addr + h, 0)
