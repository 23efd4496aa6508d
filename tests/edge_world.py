"""A small world for edge-agent tests: J100UC collector, modules' archives, real central ingest.

- ``Concentrator``: the real collector ticking on a thread; its serial line is a
  ``Pipe`` (agent in this process) or a TCP listener (agent in a subprocess,
  ``link = "socket://127.0.0.1:PORT"``).
- ``ArchiveDownlink``: the mesh below it, reduced to what the agent's faults need:
  every module answers BACKFILL_REQ from its archive of the hours it has reported.
- ``Central``: central's real ingest (``central.ingest``) on an SQLite store.
"""

import os
import socket
import sys
import threading
import time

from central.ingest import Ingestor, MqttIngest
from central.store import open_store
from edge_agent.linkport import Pipe
from firmware.j100uc.collector import Collector
from protocol import messages
from protocol.batch import Signer, Verifier
from balans.toolchain import REPO

sys.path.insert(0, str(REPO / "tests" / "mpy"))
from j100uc_bench import BenchHAL  # noqa: E402

H = int(time.time()) // 3600 - 500  # the hours reported lie within the modules' 45-day archive
U = messages.DELTA_UNKNOWN


def totals(addr, h):
    """Cumulative pulses of module ``addr`` at the start of hour H+h (electricity, water, unused)."""
    return (1000 * addr + 37 * h, 10 * addr + h, 0)


def expected_readings(modules, hours):
    out = {}
    for a in modules:
        for h in hours:
            e, w = totals(a, h)[:2]
            out[("%04x.0" % a, "1-0:1.8.0", (H + h) * 3600)] = e
            out[("%04x.1" % a, "8-0:1.0.0", (H + h) * 3600)] = w
    return out


def hourly(addr, h):
    return messages.Hourly(H + h, 0, 150, 0x31, totals(addr, h), (U,) * 6).encode()


class ArchiveDownlink:
    """Modules answering backfill requests from their archives (hours they have reported)."""

    def __init__(self):
        self.concentrator = None
        self.reported = {}  # addr -> set of h
        self.sent = []
        self.broadcasts = []
        self.backfills = 0

    def send(self, dst, payload):
        self.sent.append((dst, bytes(payload)))
        if payload[0] == messages.BackfillReq.TYPE:
            req = messages.decode(payload)
            self.backfills += 1
            for hour in range(req.from_hour, req.from_hour + req.count):
                if hour - H in self.reported.get(dst, ()):
                    self.concentrator.collector.on_uplink(dst, hourly(dst, hour - H), backfill=True)
        return True

    def broadcast(self, payload, group=None):
        self.broadcasts.append((bytes(payload), group))
        return True


class PipeLine:
    def __init__(self):
        self.pipe = Pipe()
        self.agent_end = self.pipe.agent_end

    def write(self, data):
        return self.pipe.concentrator_end.write(data)

    def read(self):
        return self.pipe.concentrator_end.read_all()

    def close(self):
        pass


class TcpLine:
    """The concentrator's serial port as a TCP listener: one agent at a time, bytes dropped while none."""

    def __init__(self):
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(0.05)
        self.url = "socket://127.0.0.1:%d" % self.server.getsockname()[1]
        self.conn = None

    def _accept(self):
        try:
            conn, _ = self.server.accept()
        except OSError:
            return
        conn.setblocking(False)
        if self.conn:
            self.conn.close()
        self.conn = conn

    def write(self, data):
        if self.conn is None:
            self._accept()
        try:
            if self.conn:
                self.conn.sendall(data)
        except OSError:
            self.conn.close()
            self.conn = None
        return len(data)

    def read(self):
        self._accept() if self.conn is None else None
        if self.conn is None:
            return b""
        try:
            data = self.conn.recv(65536)
        except BlockingIOError:
            return b""
        except OSError:
            data = b""
        if not data:  # the agent went away (killed): the next one connects anew
            self.conn.close()
            self.conn = None
            self._accept()
        return data

    def close(self):
        if self.conn:
            self.conn.close()
        self.server.close()


class LineHAL(BenchHAL):
    def __init__(self, flash, line):
        super().__init__(flash)
        self.line = line
        self.unix = int(time.time())

    def ticks_ms(self):
        return int(time.monotonic() * 1000)

    def link_write(self, data):
        return self.line.write(data)

    def link_read(self):
        return self.line.read()


class Concentrator:
    """The collector ticking every 10 ms on its own thread, as the MCU's main loop would."""

    def __init__(self, tmp_path, modules, line=None, hold_records=8192, save_s=0.05):
        flash = str(tmp_path / "flash")
        os.makedirs(flash, exist_ok=True)
        self.line = line or PipeLine()
        self.hal = LineHAL(flash, self.line)
        self.down = ArchiveDownlink()
        self.down.concentrator = self
        self.modules = list(modules)
        self.config = {"net_id": 1, "site": "s1", "conc": "c-0001", "hold_records": hold_records,
                       "save_s": save_s, "backfill_retry_s": 2, "backfill_settle_s": 0.05,
                       "modules": {a: ["electricity", "water", None] for a in self.modules}}
        self.lock = threading.RLock()
        self.collector = Collector(self.hal, self.config, self.down)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            with self.lock:
                self.collector.tick()
            time.sleep(0.01)

    def report(self, hours):
        """Every module reports each hour of ``hours`` (live)."""
        for h in hours:
            with self.lock:
                for a in self.modules:
                    self.down.reported.setdefault(a, set()).add(h)
                    self.collector.on_uplink(a, hourly(a, h))

    def restart(self):
        """Power cycle: RAM (the ring) is gone, flash stays."""
        with self.lock:
            self.collector = Collector(self.hal, self.config, self.down)

    def stop(self):
        self._stop.set()
        self._thread.join()
        self.line.close()


class Central:
    """central.ingest on an SQLite store, subscribed to the broker."""

    def __init__(self, tmp_path, keys, broker, conc="c-0001"):
        self.store = open_store(str(tmp_path / "central.db"))
        verifier = Verifier()
        verifier.add_key(b"agent-1", keys.agent.public_key(), conc)
        self.ingestor = Ingestor(self.store, verifier, Signer(keys.central, b"central-1"))
        self.broker = broker
        self.mqtt = None

    def start(self):
        self.mqtt = MqttIngest(self.ingestor, self.broker.host, self.broker.port).start()
        return self

    def stop(self):
        if self.mqtt:
            self.mqtt.stop()
            self.mqtt = None

    def readings(self):
        return {(m, r, int(t)): int(v) for m, r, t, v in
                self.store.query("SELECT meter_id, register, ts, value FROM registers")}

    def records_in_batches(self):
        return int(self.store.query("SELECT COALESCE(SUM(records), 0) FROM batches")[0][0])

    def close(self):
        self.stop()
        self.store.close()
