# Test bench for the J100UC collector, on MicroPython and CPython alike:
# a HAL over RAM and a temp flash directory, a recording downlink, and a
# minimal agent end speaking protocol/link.py.
import os

from firmware.common.ota.slots import remove_tree
from protocol import link


class BenchHAL:
    def __init__(self, flash):
        self.flash = flash
        self.ms = 0
        self.unix = 0
        self.to_agent = bytearray()
        self.to_conc = bytearray()

    def ticks_ms(self):
        return self.ms

    def unix_time(self):
        return self.unix

    def set_unix_time(self, seconds):
        self.unix = seconds

    def flash_path(self):
        return self.flash

    def link_write(self, data):
        self.to_agent.extend(data)
        return len(data)

    def link_read(self):
        data = bytes(self.to_conc)
        self.to_conc[:] = b""
        return data


class Downlink:
    def __init__(self, ok=True):
        self.sent = []
        self.broadcasts = []
        self.ok = ok

    def send(self, dst, payload):
        if self.ok:
            self.sent.append((dst, bytes(payload)))
        return self.ok

    def broadcast(self, payload, group=None):
        if self.ok:
            self.broadcasts.append((bytes(payload), group))
        return self.ok


class MiniAgent:
    """Takes records in order, acknowledges them (when ``acking``), remembers other frames."""

    def __init__(self, hal, credit=1000):
        self.hal = hal
        self.reader = link.Reader()
        self.boot = None
        self.expected = 0
        self.records = []
        self.frames = []
        self.credit = credit
        self.acking = True

    def pump(self):
        for body in self.reader.feed(bytes(self.hal.to_agent)):
            ftype, fields, tail = link.unpack(body)
            if ftype == link.L_HELLO:
                if fields[0] != self.boot:
                    self.boot, self.expected = fields[0], fields[1]
            elif ftype == link.L_RECORDS:
                boot, first, n = fields
                if first <= self.expected < first + n:
                    recs = list(link.records(tail))
                    self.records.extend(recs[self.expected - first:])
                    self.expected = first + n
            else:
                self.frames.append((ftype, fields, tail))
        self.hal.to_agent[:] = b""
        if self.acking and self.boot is not None:
            self.send(link.pack(link.L_ACK, self.boot, self.expected, self.credit))

    def send(self, body):
        self.hal.to_conc.extend(link.encode(body))


_n = [0]


def flash_dir():
    _n[0] += 1
    path = "/tmp/j100uc-test-%d-%d" % (os.getpid() if hasattr(os, "getpid") else 0, _n[0])
    remove_tree(path)  # a directory an earlier run left (MicroPython has no getpid: the same name)
    os.mkdir(path)
    return path


def run(conc, hal, agent, seconds, step_ms=500):
    for _ in range(seconds * 1000 // step_ms):
        hal.ms += step_ms
        conc.tick()
        agent.pump()
