"""The agent's end of broadcast authentication: the uTESLA key chain (protocol/tesla.py).

Every broadcast the modules act on (ripple control from central, the hourly time sync the
agent sends itself) leaves here as TAGGED under the key of the current interval, and that key
goes out as DISCLOSE once no module may take broadcasts of its interval any more. Each module
gets its end of the chain (SET_ANCHOR, sealed under its own key by the concentrator) as soon
as the concentrator reports it; a module without one acts on the untagged rules
(docs/firmware.md, "What a broadcast may do").

State, in ``<queue dir>/tesla.json`` (mode 0600: the seed makes every key): the chain's seed
and start, and which modules hold an anchor of it. A chain lasts CHAIN_LENGTH intervals
(60 days); RENEW_S before its end a new one starts and every module is anchored again. Each
module is also anchored again every REANCHOR_S, in case it was replaced or re-flashed.
"""

import json
import os

from protocol import link, messages, tesla
from edge_agent.commands import BROADCAST
from edge_agent.queue import write_atomic

FILE = "tesla.json"
CHAIN_LENGTH = 1 << 20  # 5 s intervals: 60 days; walked from the seed in ~1 s of CPU, a slice per pump
GROW_PER_PUMP = 20000  # hashes a pump spends walking a new chain (~15 ms): the link is never kept waiting
RENEW_S = 7 * 86400  # a new chain this long before the old one ends: time to anchor every module
TIME_SYNC_S = 3600  # modules' clocks drift under 2 s a day; tagged hourly syncs keep them within CLOCK_BEHIND_S
ANCHORS_IN_FLIGHT = 4  # SET_ANCHOR commands out at once: the concentrator queues 32 commands in all
ANCHOR_RETRY_S = 900  # a SET_ANCHOR without a result (a lost link frame) goes again after this
# Each module is anchored again this often: one replaced or re-flashed under the same address has
# lost its anchor, and nothing else would tell the agent (240 commands a day beside 5,760 reports).
REANCHOR_S = 86400


class KeyChain:
    """A uTESLA chain of ``length`` keys from a secret ``seed``, K_``length`` = seed.

    Keys are found from checkpoints every CHECKPOINT keys (2 MB for a million keys would
    be needed otherwise), so any K_i costs at most CHECKPOINT hashes. Walking the chain
    once to set them costs ``length`` hashes (1.4 s for a million on CPython); ``grow``
    does it a slice at a time, so an agent's loop never stalls for it.
    """

    CHECKPOINT = 1024

    def __init__(self, seed, start, length):
        self.start = start
        self.length = length
        self._points = {length: bytes(seed)}
        self._walked = length  # the lowest index reached so far
        self._k = bytes(seed)

    def grow(self, hashes):
        """Walk ``hashes`` more steps down the chain; True once every checkpoint is set."""
        k, i = self._k, self._walked
        stop = max(0, i - hashes)
        while i > stop:
            k = tesla.previous(k)
            i -= 1
            if i % self.CHECKPOINT == 0:
                self._points[i] = k
        self._k, self._walked = k, i
        return i == 0

    def key(self, interval):
        """K_``interval``; ValueError outside the chain."""
        self.grow(self._walked)
        if not 0 <= interval <= self.length:
            raise ValueError("interval %d outside the chain (0..%d)" % (interval, self.length))
        top = min(self.length, -(-interval // self.CHECKPOINT) * self.CHECKPOINT)
        return tesla.earlier(self._points[top], top - interval)

    def end(self):
        """Unix time after which the chain has no key left."""
        return self.start + (self.length + 1) * tesla.INTERVAL_S


class BroadcastKeys:
    """``tag(payload, now)`` a broadcast; ``pump(send, now, modules, next_id)`` sends keys, syncs, anchors."""

    def __init__(self, directory, clock):
        self.path = os.path.join(directory, FILE)
        self.clock = clock
        self._chain = None
        self._disclose = []  # intervals whose keys are still to go out, oldest first
        self._in_flight = {}  # link command id -> (addr, sent at)
        self._last_sync = None
        try:
            with open(self.path) as f:
                state = json.load(f)
            self.seed, self.start = bytes.fromhex(state["seed"]), state["start"]
            self.anchored = {int(a): t for a, t in state["anchored"].items()}  # addr -> when it took the anchor
        except (FileNotFoundError, KeyError, ValueError):
            self._new_chain(clock())

    @property
    def chain(self):
        if self._chain is None:
            self._chain = KeyChain(self.seed, self.start, CHAIN_LENGTH)
        return self._chain

    def interval_at(self, now):
        return (int(now) - self.start) // tesla.INTERVAL_S

    def tag(self, payload, now):
        """``payload`` (GROUP_CMD or TIME_SYNC) as TAGGED for the interval of ``now``; its key is disclosed later."""
        interval = self.interval_at(now)
        tagged = messages.Tagged(interval, tesla.tag(self.chain.key(interval), interval, payload), payload)
        tagged.validate()
        if interval not in self._disclose:
            self._disclose.append(interval)
        return tagged.encode()

    def pump(self, send, now, modules, next_id):
        """Disclose the keys that are due, send the hourly time, anchor modules; True if anything went."""
        if not self.chain.grow(GROW_PER_PUMP):
            return True
        if now >= self.chain.end() - RENEW_S:
            self._new_chain(now)
        sent = False
        while self._disclose and now >= self.start + (self._disclose[0] + tesla.DISCLOSE_AFTER) * tesla.INTERVAL_S:
            interval = self._disclose.pop(0)
            disclose = messages.Disclose(interval, self.chain.key(interval)).encode()
            send(link.pack(link.L_CMD, next_id(), BROADCAST, tail=disclose))
            sent = True
        if self._last_sync is None or now - self._last_sync >= TIME_SYNC_S:
            self._last_sync = now
            sync = messages.TimeSync(0, int(now), int(now * 1000) % 1000).encode()
            send(link.pack(link.L_CMD, next_id(), BROADCAST, tail=self.tag(sync, now)))
            sent = True
        for cid, (addr, at) in list(self._in_flight.items()):
            if now - at >= ANCHOR_RETRY_S:
                del self._in_flight[cid]
        busy = {addr for addr, _ in self._in_flight.values()}
        for addr in modules:
            if len(self._in_flight) >= ANCHORS_IN_FLIGHT:
                break
            if now - self.anchored.get(addr, -REANCHOR_S) < REANCHOR_S or addr in busy:
                continue
            # the newest key already disclosed: holding it lets a thief forge nothing to come
            interval = max(0, self.interval_at(now) - tesla.DISCLOSE_AFTER - 1)
            anchor = messages.SetAnchor(0, self.start, interval, self.chain.key(interval)).encode()
            cid = next_id()
            send(link.pack(link.L_CMD, cid, addr, tail=anchor))
            self._in_flight[cid] = (addr, now)
            sent = True
        return sent

    def status(self, modules):
        """For the status topic: which known modules hold an anchor of the current chain, and when it ends."""
        return {"anchored": sum(1 for a in modules if a in self.anchored),
                "waiting": sorted("%04x" % a for a in modules if a not in self.anchored),  # never anchored
                "chain_start": self.start, "chain_end": self.chain.end()}

    def on_result(self, cid, status):
        """A command's RESULT from the concentrator: True if it was a SET_ANCHOR of ours."""
        found = self._in_flight.pop(cid, None)
        if found is None:
            return False
        if status == messages.ST_OK:
            self.anchored[found[0]] = self.clock()
            self._save()
        return True

    def _new_chain(self, now):
        # the chain starts in the past, so the first anchor handed out is a key already disclosed
        self.seed = os.urandom(tesla.KEY_LEN)
        self.start = int(now) - (tesla.DISCLOSE_AFTER + 1) * tesla.INTERVAL_S
        self.anchored = {}
        self._chain = None
        self._disclose = []
        self._in_flight = {}
        self._save()

    def _save(self):
        state = {"seed": self.seed.hex(), "start": self.start, "anchored": {str(a): t for a, t in self.anchored.items()}}
        write_atomic(self.path, json.dumps(state).encode(), mode=0o600)
