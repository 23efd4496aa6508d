"""The concentrator's module table on flash: the modules it serves, their channels' resources, their keys.

    roster = Roster(flash_root, config.get("modules"))
    roster.get(addr)                    the module's AES key or None (MeshRoot's ``module_keys``)
    roster.add(addr, resources, key)    from the agent's ROSTER frame (protocol/link.py)
    roster.remove(addr)

Files, each replaced by rename so a power cut leaves the old or the new one: j100uc.roster
(per module: addr u16 and 3 resource bytes, RESOURCES index or 0xFF), keys/modules/<addr>.key.
The first boot seeds the table from config.json's "modules" (what the installer flashed); after
that the file is the truth, and the agent adds the modules installers provision
(``balans agent modules add``). A module in the table whose key file is missing is refused at
boot, by name: the concentrator could not open one of its frames.
"""

import os
import struct

from firmware.common.ota.slots import make_dirs, write_atomic
from protocol.link import KEY_LEN, NO_RESOURCE
from protocol.messages import CHANNELS
from protocol.obis import RESOURCES

TABLE = "j100uc.roster"
ENTRY = "<HBBB"
ENTRY_LEN = 5


class Roster:
    def __init__(self, root, seed=None):
        self.root = root
        self.resources = {}  # addr -> [RESOURCES index or -1] per channel
        self.keys = {}
        try:
            with open(self._path(TABLE), "rb") as f:
                data = f.read()
        except OSError:
            data = None
        if data is None:
            for addr, names in (seed or {}).items():
                number = int(addr, 16) if isinstance(addr, str) else addr
                names = list(names) + [None] * (CHANNELS - len(names))
                self.resources[number] = [RESOURCES.index(r) if r else -1 for r in names]
        else:
            for off in range(0, len(data) - ENTRY_LEN + 1, ENTRY_LEN):
                addr, a, b, c = struct.unpack_from(ENTRY, data, off)
                self.resources[addr] = [-1 if r == NO_RESOURCE else r for r in (a, b, c)]
        for addr in self.resources:
            try:
                with open(self._key_path(addr), "rb") as f:
                    self.keys[addr] = f.read()
            except OSError:
                raise ValueError("no key for module %04x: keys/modules/%04x.key is missing" % (addr, addr))
        if data is None:
            self._save()

    def get(self, addr, default=None):
        return self.keys.get(addr, default)

    def add(self, addr, resources, key):
        """Serve module ``addr`` (its key first: a table entry never lacks its key file)."""
        if len(key) != KEY_LEN:
            raise ValueError("a module key is %d bytes" % KEY_LEN)
        make_dirs(self.root + "/keys/modules")
        write_atomic(self._key_path(addr), key)
        self.keys[addr] = bytes(key)
        self.resources[addr] = [-1 if r == NO_RESOURCE else r for r in resources]
        self._save()

    def remove(self, addr):
        if self.resources.pop(addr, None) is None:
            return
        self._save()
        self.keys.pop(addr, None)
        try:
            os.remove(self._key_path(addr))
        except OSError:
            pass

    def _save(self):
        buf = bytearray(ENTRY_LEN * len(self.resources))
        off = 0
        for addr, res in self.resources.items():
            struct.pack_into(ENTRY, buf, off, addr, *[NO_RESOURCE if r < 0 else r for r in res])
            off += ENTRY_LEN
        write_atomic(self._path(TABLE), buf)

    def _path(self, name):
        return self.root + "/" + name

    def _key_path(self, addr):
        return self.root + "/keys/modules/%04x.key" % addr
