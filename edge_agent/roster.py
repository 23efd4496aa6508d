"""The concentrator's module table as the agent keeps it, and its delivery over the serial link.

Installers provision modules in the field (``balans flash``, docs/installer.md) and come back with
``keys.csv`` (device_id,key) and ``meters.csv`` (meter_id,...,resource,...). ``balans agent
modules add`` merges them into ``<queue dir>/roster.json`` (mode 0600: it holds AES keys); the
running agent sees the file change and sends each module the concentrator does not yet hold as a
ROSTER frame (protocol/link.py). The concentrator stores the key on its flash
(firmware/j100uc/roster.py) and answers ROSTER_OK with the key's check value; an entry is done
when that value is its own key's. A removed module goes as a zero key. A concentrator that
restarts (a new boot on the link) is asked again for everything, so one whose flash was
replaced gets the whole table back.
"""

import csv
import json
import os
import re

from protocol import link
from protocol.obis import RESOURCES
from edge_agent.queue import write_atomic

FILE = "roster.json"
RETRY_S = 10.0  # a ROSTER frame not answered in this long goes again
PER_PUMP = 8  # frames a pump sends: 240 modules go in a minute without crowding the link
LOOK_S = 5.0  # how often the file is looked at for changes (the CLI writes it)


def read_csv(keys_csv, meters_csv):
    """{addr: {"key": hex, "resources": [name or None] x 3}} from the installer's provisioning record.

    Every bad line is reported with its file, line and reason; none is dropped silently.
    """
    errors = []
    modules = {}
    for n, row in _rows(keys_csv, ("device_id", "key")):
        addr, key = row["device_id"].strip().lower(), row["key"].strip().lower()
        if not re.fullmatch(r"[0-9a-f]{4}", addr) or addr in ("0000", "ffff"):
            errors.append("%s line %d: device id %r is not a module's 4 hex digits" % (keys_csv, n, addr))
        elif not re.fullmatch(r"[0-9a-f]{32}", key) or not int(key, 16):
            errors.append("%s line %d: the key of %s is not 32 hex digits" % (keys_csv, n, addr))
        else:
            modules[addr] = {"key": key, "resources": [None] * 3}
    for n, row in _rows(meters_csv, ("meter_id", "resource")):
        m = re.fullmatch(r"([0-9a-fA-F]{4})\.([0-2])", row["meter_id"].strip())
        resource = row["resource"].strip()
        if m is None:
            errors.append("%s line %d: meter id %r is not a module's meter (002a.0 .. 002a.2)"
                          % (meters_csv, n, row["meter_id"]))
        elif resource not in RESOURCES:
            errors.append("%s line %d: resource %r unknown; use one of %s" % (meters_csv, n, resource,
                                                                             ", ".join(RESOURCES)))
        elif m.group(1).lower() not in modules:
            errors.append("%s line %d: module %s has no key in %s" % (meters_csv, n, m.group(1), keys_csv))
        else:
            modules[m.group(1).lower()]["resources"][int(m.group(2))] = resource
    if errors:
        raise ValueError("\n".join(errors))
    return modules


def _rows(path, needed):
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f, restval="")
        try:
            missing = [c for c in needed if c not in (reader.fieldnames or ())]
            if missing:
                raise ValueError("%s: no column %s in its header" % (path, ", ".join(missing)))
            for row in reader:
                yield reader.line_num, {k: row[k] or "" for k in needed}
        except csv.Error as e:
            raise ValueError("%s line %d: %s" % (path, reader.line_num, e)) from None


class Roster:
    def __init__(self, queue_dir):
        self.path = os.path.join(queue_dir, FILE)
        self.wanted = {}  # addr -> (resources bytes, key bytes, the key's check value); a zero key: remove
        self.held = {}  # addr -> check value the concentrator last answered
        self._sent = {}  # addr -> when its ROSTER frame last went
        self._mtime = None
        self._looked = None
        self._boot = None

    # ---- the file (the CLI's side) ------------------------------------------------
    def load(self):
        try:
            with open(self.path) as f:
                return json.load(f)
        except FileNotFoundError:
            return {}

    def save(self, table):
        write_atomic(self.path, json.dumps(table, indent=1, sort_keys=True).encode(), mode=0o600)

    def add(self, modules):
        table = self.load()
        table.update(modules)
        self.save(table)

    def remove(self, addr):
        table = self.load()
        if addr not in table:
            raise ValueError("module %s is not in %s" % (addr, self.path))
        table[addr] = {"key": "00" * link.KEY_LEN, "resources": [None] * 3}
        self.save(table)

    # ---- the running agent's side ---------------------------------------------------
    def pump(self, send, now, conc_boot):
        """Send what the concentrator does not hold yet; True if a frame went."""
        if conc_boot != self._boot:  # a restarted concentrator: ask it for everything again
            self._boot = conc_boot
            self.held.clear()
            self._sent.clear()
        if self._looked is None or now - self._looked >= LOOK_S:
            self._looked = now
            self._reload()
        sent = 0
        for addr, (resources, key, check) in self.wanted.items():
            if self.held.get(addr) == check:
                continue
            last = self._sent.get(addr)
            if last is not None and now - last < RETRY_S:
                continue
            send(link.pack(link.L_ROSTER, addr, *resources, tail=key))
            self._sent[addr] = now
            sent += 1
            if sent >= PER_PUMP:
                break
        return sent > 0

    def on_held(self, addr, check):
        self.held[addr] = check

    def _reload(self):
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._mtime:
            return
        self._mtime = mtime
        self.wanted = {}
        for addr, m in self.load().items():
            resources = bytes(link.NO_RESOURCE if r is None else RESOURCES.index(r) for r in m["resources"])
            key = bytes.fromhex(m["key"])
            self.wanted[int(addr, 16)] = (resources, key, link.key_check(key))

    def status(self):
        pending = sorted("%04x" % a for a, (_, _, check) in self.wanted.items() if self.held.get(a) != check)
        return {"modules": sum(1 for _, key, _ in self.wanted.values() if any(key)),
                "held": len(self.wanted) - len(pending), "pending": pending}
