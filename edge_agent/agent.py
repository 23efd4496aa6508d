"""The edge agent: serial link in, durable queue, signed batches out over MQTT, central's acks back.

One owner thread (``pump`` in a loop) does everything; paho's loop thread only
feeds ``Mqtt.inbox``. In-process use (tests, ``balans demo``, benchmarks)::

    from edge_agent.agent import Agent
    from edge_agent.config import from_dict
    from edge_agent.linkport import Pipe

    pipe = Pipe()                 # or no link: Agent(config) opens [concentrator] link via pyserial
    agent = Agent(from_dict({...}), link=pipe.agent_end)
    hal.link_write = pipe.concentrator_end.write      # the concentrator's HAL
    hal.link_read = pipe.concentrator_end.read_all
    agent.start()                 # its own thread; or agent.open() + agent.pump() calls in yours
    ...
    agent.wait_idle(timeout=30)   # True once every batch is acknowledged by central
    agent.stop()

``agent.inject(records, events)`` queues readings without a concentrator.
``agent.status()`` is the dict published on the status topic.
"""

import json
import logging
import os
import threading
import time
from collections import OrderedDict, deque

from edge_agent import keys
from edge_agent.broadcasts import BroadcastKeys
from edge_agent.commands import CommandChecker
from edge_agent.config import Config, from_dict
from edge_agent.linkport import LINK_CREDIT, LinkSession, open_port
from edge_agent.mqtt import Mqtt
from edge_agent.queue import DurableQueue, write_atomic
from edge_agent.roster import Roster
from edge_agent.updates import Updates, read_vendor_key
from protocol import link
from protocol.batch import AckVerifier, Batch, decode_payload
from protocol.cose import Sign1Verifier, sign1
from protocol.errors import ProtocolError
from edge_agent.commands import BROADCAST

log = logging.getLogger("balans.agent")

LINK_KEEPALIVE_S = 1.0  # ACK with credit this often even when idle: it is also the flow control
TIME_SYNC_S = 60.0  # network time to the concentrator
FULL_RETRY_S = 1.0  # how often a refused append is tried again
IDLE_SLEEP_S = 0.01
ERROR_BACKOFF_S = 1.0
REJECTED_DIR = "quarantine"  # in the queue dir: rejected-<boot>-<seq>.cbor, batches central refused
QUARANTINE_SHARE = 4  # the quarantine may fill 1/4 of [queue] max_bytes; then rejected batches stay queued
REQUEUE_DIR = "requeue"  # in the queue dir: batches an operator wants sent again (balans agent requeue)


class Agent:
    def __init__(self, config, link=None, clock=time.time):
        self.config = config if isinstance(config, Config) else from_dict(config)
        self.clock = clock
        self.site = self.config.concentrator.site
        self.conc = self.config.concentrator.id
        self._stream = link
        self._lock = threading.RLock()
        self._thread = None
        self._stop = threading.Event()
        self.queue = None
        self.session = None
        self.mqtt = None
        self.counters = dict(batches_sent=0, acks=0, acks_duplicate=0, acks_rejected=0, acks_forged=0,
                             acks_unknown=0, requeued=0, commands_forwarded=0, commands_refused=0, results=0, errors=0,
                             updates_queued=0)
        self.modules = {}  # addr -> last MODULE report
        self.concentrator = {}  # last STATS report
        self._pending = deque()  # (readings, events, link cursor or None), as they came off the link
        self._pending_records = 0
        self._pending_since = None
        self._full = False
        self._last_full_try = 0.0
        self._backlog = deque()
        self._live = deque()
        self._inflight = OrderedDict()
        self._held = set()  # batches central rejected that the full quarantine could not take: kept, not resent
        self._turn = 0
        self._cmd_parts = {}
        self._link_cmd = 0
        self._last_keepalive = 0.0
        self._last_time = 0.0
        self._last_status = 0.0
        self.looped_at = time.monotonic()  # when the pump thread last came round: a hung one stops moving it

    # ---- life cycle ------------------------------------------------------------------
    def open(self):
        """Open the queue, keys and link; recover what a crash left. Idempotent."""
        if self.queue is not None:
            return self
        c = self.config
        self.queue = DurableQueue(c.queue.dir, c.queue.max_bytes, c.queue.segment_bytes, self.clock).open()
        self.boot = self._next_boot()
        self.seq = 0
        self.signing_key = keys.load_private(c.signing.key_file)
        self.kid = c.signing.kid.encode()
        self.ack_verifier = AckVerifier()
        central = Sign1Verifier()
        for kid, path in c.central.keys.items():
            public = keys.load_public(path)
            self.ack_verifier.add_key(kid.encode(), public)
            central.add_key(kid.encode(), public)
        self.commands = CommandChecker(self.conc, central, os.path.join(c.queue.dir, "commands.seen"),
                                       c.commands.max_ttl_s)
        self.roster = Roster(c.queue.dir)
        self.broadcasts = BroadcastKeys(c.queue.dir, self.clock)
        self.updates = Updates(c.queue.dir, read_vendor_key(c.ota.vendor_key) if c.ota.vendor_key else None,
                               known=lambda: (list(self.modules), self.concentrator.get("modules", 0)))
        self._backlog.extend(self.queue.entries)
        if self._stream is None and c.concentrator.link:
            self._stream = open_port(c.concentrator.link, c.concentrator.baud)
        if self._stream is not None:
            self.session = LinkSession(self._stream, self.queue.link_cursor)
            self.session.ack(self._credit())
        log.info("agent %s/%s boot %d: %d batches queued (%d bytes)", self.site, self.conc, self.boot,
                 len(self.queue.entries), self.queue.bytes)
        return self

    def _next_boot(self):
        """The agent's boot counter: with seq restarting at 0 per boot, (conc, boot, seq) is never reused."""
        path = os.path.join(self.config.queue.dir, "agent.boot")
        try:
            with open(path) as f:
                boot = int(f.read().strip()) + 1
        except (FileNotFoundError, ValueError):
            boot = 1
        write_atomic(path, b"%d\n" % boot)
        return boot

    def connect(self):
        """Start the MQTT connection (paho's thread reconnects on its own)."""
        if self.mqtt is None:
            self.mqtt = Mqtt(self.config.mqtt, self.site, self.conc)
            self.mqtt.start()

    def start(self):
        """open(), connect(), then pump in a thread of its own until stop()."""
        self.open()
        self.connect()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="balans-agent", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.looped_at = time.monotonic()
            try:
                worked = self.pump()
            except Exception:  # a service that nobody watches keeps going; the queue is the truth
                log.exception("agent step failed; retrying in %.0f s", ERROR_BACKOFF_S)
                self.counters["errors"] += 1
                self._stop.wait(ERROR_BACKOFF_S)
                continue
            if not worked:
                self._stop.wait(IDLE_SLEEP_S)

    def stop(self):
        """Flush what is pending, say goodbye on the status topic, close everything."""
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self.queue is not None:
                self._flush(force=True)
            if self.mqtt is not None:
                self.mqtt.stop(json.dumps(dict(self.status(), state="offline")))
                self.mqtt = None
            if self.queue is not None:
                self.queue.close()
                self.queue = None
            if self._stream is not None and hasattr(self._stream, "close"):
                self._stream.close()

    def wait_idle(self, timeout=30.0):
        """Wait until every reading received is acknowledged by central; True if it happened in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.idle():
                    return True
            time.sleep(0.02)
        return False

    def idle(self):
        s = self.session
        link_quiet = s is None or s.expected == s.durable
        return not self._pending and not self.queue.entries and link_quiet

    # ---- one step ----------------------------------------------------------------------
    def pump(self):
        """Do what is due; True if anything happened (the loop sleeps otherwise)."""
        with self._lock:
            now = self.clock()
            worked = self._pump_link(now)
            worked |= self._flush()
            worked |= self._pump_inbox(now)
            worked |= self._pump_updates(now)
            if self.session is not None:
                worked |= self.roster.pump(self.session.send, now, self.session.boot)
                worked |= self.broadcasts.pump(self.session.send, now, list(self.modules), self._next_link_id)
            worked |= self._send(time.monotonic())
            if now - self._last_status >= self.config.status.interval_s:
                self._last_status = now
                worked |= self._pump_requeue()
                self._publish_status()
            return worked

    def inject(self, records, events=()):
        """Queue readings (protocol.batch.Record) as if the concentrator had sent them."""
        with self._lock:
            records = list(records)
            size = self.config.queue.batch_records
            for i in range(0, max(1, len(records)), size):
                self._take(records[i:i + size], [list(e) for e in events] if i == 0 else [], None)
            self._flush()

    def _take(self, records, events, cursor):
        if self._pending_since is None:
            self._pending_since = self.clock()
        self._pending.append((records, events, cursor))
        self._pending_records += len(records)

    # ---- link ------------------------------------------------------------------------------
    def _pump_link(self, now):
        s = self.session
        if s is None:
            return False
        frames, others = s.poll()
        for readings, events, cursor in frames:
            self._take(readings, events, cursor)
        for ftype, fields, tail in others:
            self._on_frame(ftype, fields, tail)
        if now - self._last_keepalive >= LINK_KEEPALIVE_S:
            self._last_keepalive = now
            s.ack(self._credit())
        if now - self._last_time >= TIME_SYNC_S:
            self._last_time = now
            s.send(link.pack(link.L_TIME, int(now)))
        return bool(frames or others)

    def _credit(self):
        return 0 if self._full else LINK_CREDIT

    def _on_frame(self, ftype, fields, tail=b""):
        if ftype == link.L_MODULE:
            addr, last_heard, battery, rssi, hops, missing = fields
            volts = round(2.0 + battery * 0.02, 2) if battery else None  # 0: not reported yet
            self.modules[addr] = dict(last_heard=last_heard, battery_v=volts, rssi=rssi,
                                      hops=hops, missing_hours=missing)
        elif ftype == link.L_STATS:
            self.concentrator = dict(zip(("bad_frames", "unknown", "overflow", "held", "modules"), fields))
        elif ftype == link.L_RESULT:
            self._on_result(*fields)
        elif ftype == link.L_OTA:
            self.updates.on_need(tail, self.session.send)
        elif ftype == link.L_OTA_STATUS:
            self.updates.on_status(*fields)
        elif ftype == link.L_ROSTER_OK:
            self.roster.on_held(*fields)
        else:
            self.session.unknown_frames += 1

    # ---- queue ------------------------------------------------------------------------------
    def _flush(self, force=False):
        """Group commit: one batch per batch_records readings or flush_s seconds, fsynced, then link-acked."""
        if not self._pending:
            return False
        q = self.config.queue
        now = self.clock()
        due = force or self._pending_records >= q.batch_records or now - self._pending_since >= q.flush_s
        if not due or (self._full and now - self._last_full_try < FULL_RETRY_S and not force):
            return False
        while self._pending:
            # whole link frames up to batch_records readings: the batch's cursor covers exactly them
            records, events, cursor, n = [], [], None, 0
            for readings, evs, cur in self._pending:
                if n and len(records) + len(readings) > q.batch_records:
                    break
                records.extend(readings)
                events.extend(evs)
                cursor = cur or cursor
                n += 1
            entry = self.queue.append(Batch(self.conc, self.boot, self.seq, records, events), cursor)
            if entry is None:
                if not self._full:
                    log.error("queue full (%d bytes): holding the link until room returns", self.queue.bytes)
                self._full = True
                self._last_full_try = now
                break
            self._full = False
            self.seq += 1
            for _ in range(n):
                self._pending.popleft()
            self._pending_records -= len(records)
            self._live.append(entry.key)
            if cursor and self.session:
                self.session.made_durable(cursor, self._credit())
        if not self._pending:
            self._pending_since = None
        return True

    def _pump_requeue(self):
        """Send again the rejected batches an operator put back (``balans agent requeue``).

        Each becomes a new batch (new seq) of the same readings; the file goes only once that
        batch is durable. A crash in between sends the readings twice, which central stores once.
        """
        folder = os.path.join(self.config.queue.dir, REQUEUE_DIR)
        try:
            names = sorted(os.listdir(folder))
        except FileNotFoundError:
            return False
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, "rb") as f:
                    batch = decode_payload(f.read())
                if batch.conc != self.conc:
                    raise ProtocolError("a batch of %r, not of this concentrator" % batch.conc)
            except (OSError, ProtocolError) as e:
                log.error("cannot send %s again: %s", path, e)
                continue
            self._take(batch.records, batch.events, None)
            self._flush(force=True)
            if self._pending:
                return True  # the queue is full: the rest wait for room
            os.remove(path)
            self.counters["requeued"] += 1
            log.info("sent %s again as batch %d/%d", name, self.boot, self.seq - 1)
        if names and self._held:  # the operator asked for rejected data again: the held batches too
            self._backlog.extend(sorted(self._held))
            self._held.clear()
        return bool(names)

    def _quarantine_bytes(self):
        try:
            return sum(e.stat().st_size for e in os.scandir(os.path.join(self.config.queue.dir, REJECTED_DIR)))
        except FileNotFoundError:
            return 0

    # ---- MQTT ---------------------------------------------------------------------------------
    def _pump_inbox(self, now):
        if self.mqtt is None:
            return False
        worked = False
        inbox = self.mqtt.inbox
        while not inbox.empty():
            what, payload = inbox.get_nowait()
            worked = True
            if what == "connected":
                log.info("connected to %s:%d", self.config.mqtt.host, self.config.mqtt.port)
                self._requeue_inflight()
                self._publish_status()
            elif what == "disconnected":
                log.warning("MQTT connection lost (%s); reconnecting with backoff", payload)
                self._requeue_inflight()
            elif what == "refused":
                log.error("MQTT broker refused the connection: %s", payload)
            elif what == self.mqtt.topics["ack"]:
                self._on_ack(payload)
            elif what == self.mqtt.topics["cmd"]:
                self._on_command(payload, now)
        return worked

    def _requeue_inflight(self):
        self._backlog.extendleft(reversed(list(self._inflight)))
        self._inflight.clear()

    def _pick(self):
        """Oldest backlog first, but every other batch from the live side, so neither starves."""
        self._turn ^= 1
        order = (self._live, self._backlog) if self._turn else (self._backlog, self._live)
        for dq in order:
            while dq:
                key = dq.popleft()
                if key in self.queue.entries and key not in self._inflight and key not in self._held:
                    return key
        return None

    def _send(self, mono):
        m = self.mqtt
        if m is None or not m.connected:
            return False
        timeout = self.config.mqtt.ack_timeout_s
        stale = [k for k, t in self._inflight.items() if mono - t > timeout]
        for k in stale:
            del self._inflight[k]
        self._backlog.extendleft(reversed(stale))
        worked = False
        while len(self._inflight) < self.config.mqtt.max_inflight:
            key = self._pick()
            if key is None:
                break
            try:
                payload = self.queue.read(self.queue.entries[key])
            except OSError as e:
                log.error("%s: quarantined", e)
                self.queue.drop_corrupt(key)
                continue
            if not m.publish("batch", sign1(self.signing_key, self.kid, payload)):
                self._backlog.appendleft(key)
                break
            self._inflight[key] = mono
            self.counters["batches_sent"] += 1
            worked = True
        return worked

    def _on_ack(self, data):
        try:
            ack = self.ack_verifier.verify(data)
        except ProtocolError as e:
            self.counters["acks_forged"] += 1
            log.warning("refused acknowledgement: %s", e)
            return
        if ack.conc != self.conc:
            self.counters["acks_unknown"] += 1
            return
        key = (ack.boot, ack.seq)
        self._inflight.pop(key, None)
        if key not in self.queue.entries:
            self.counters["acks_unknown"] += 1
            return
        if ack.status == "rejected":
            data = self.queue.read(self.queue.entries[key])
            if self._quarantine_bytes() + len(data) > self.config.queue.max_bytes // QUARANTINE_SHARE:
                # A central that refuses everything must not fill the disk: the batch stays in the
                # queue, which then fills and thins and holds the link as for a broker outage.
                self._held.add(key)
                self.counters["acks_rejected"] += 1  # counted once its place is settled, as below
                log.error("central rejected batch %d/%d (%s); the quarantine is full, so it stays queued "
                          "(balans agent requeue sends the quarantine again)", key[0], key[1], ack.reason)
                return
            path = os.path.join(self.config.queue.dir, REJECTED_DIR, "rejected-%d-%d.cbor" % key)
            write_atomic(path, data)
            log.error("central rejected batch %d/%d (%s); kept in %s", key[0], key[1], ack.reason, path)
        elif ack.status == "duplicate":
            self.counters["acks_duplicate"] += 1
        self.counters["acks"] += 1
        self.queue.ack(key)
        if ack.status == "rejected":
            # Counted after the queue let it go: a reader that waits for the count sees the queue and the
            # held set as they are (a test read one batch held and eleven queued, the last not yet held).
            self.counters["acks_rejected"] += 1

    # ---- commands -------------------------------------------------------------------------------
    def _on_command(self, data, now):
        try:
            cmd = self.commands.check(data, int(now))
            if cmd.kind == "update":
                targets = cmd.args.get("targets") or ([] if cmd.dst == BROADCAST else [cmd.dst])
                job = self.updates.submit(cmd.args["bundle"], targets, "command %d" % cmd.id)
        except ProtocolError as e:
            self.counters["commands_refused"] += 1
            log.warning("refused command: %s", e)
            self._result({"status": "refused", "reason": str(e)})
            return
        if cmd.kind == "update":
            self.counters["updates_queued"] += 1
            self._result({"id": cmd.id, "status": "queued", "job": job["id"], "seq": job["seq"]})
            return
        if self.session is None:
            self._result({"id": cmd.id, "status": "failed", "reason": "no link to the concentrator"})
            return
        for part, message in enumerate(cmd.messages):
            self._cmd_parts[self._send_command(cmd.dst, message, now)] = (cmd.id, part, len(cmd.messages))
        self.counters["commands_forwarded"] += 1
        self._result({"id": cmd.id, "status": "forwarded", "parts": len(cmd.messages)})

    def broadcast(self, payload):
        """Send GROUP_CMD or TIME_SYNC ``payload`` to every module, tagged (edge_agent/broadcasts.py)."""
        with self._lock:
            self._send_command(BROADCAST, payload, self.clock())

    def _send_command(self, dst, message, now):
        """One message to the concentrator for ``dst``; returns its link id."""
        if dst == BROADCAST:  # ripple control and time: tagged, so modules can tell them from forgeries
            message = self.broadcasts.tag(message, now)
        link_id = self._next_link_id()
        self.session.send(link.pack(link.L_CMD, link_id, dst, tail=message))
        return link_id

    def _next_link_id(self):
        self._link_cmd = (self._link_cmd + 1) & 0xFFFFFFFF
        return self._link_cmd

    def _on_result(self, link_id, src, status, detail):
        if self.broadcasts.on_result(link_id, status):
            return
        found = self._cmd_parts.pop(link_id, None)
        if found is None:
            return
        cid, part, parts = found
        self.counters["results"] += 1
        name = {0: "ok", 1: "unknown_command", 2: "bad_value", 3: "refused", 4: "busy", 0xFF: "timeout"}
        self._result({"id": cid, "part": part, "parts": parts, "src": src,
                      "status": name.get(status, "status_%d" % status), "detail": detail})

    def _pump_updates(self, now):
        """Hand the running update to the concentrator; publish the progress it reports."""
        if self.session is None:
            return False
        worked = self.updates.pump(self.session.send, now)
        while self.updates.events:
            event = self.updates.events.pop(0)
            worked = True
            log.info("update %(job)d (seq %(seq)d): module %(module)s %(state)s", event)
            if self.mqtt is not None:
                self.mqtt.publish("ota", json.dumps(dict(event, conc=self.conc, ts=int(self.clock()))))
        return worked

    def _result(self, body):
        if self.mqtt is not None:
            self.mqtt.publish("result", json.dumps(dict(body, conc=self.conc, ts=int(self.clock()))))

    # ---- status ---------------------------------------------------------------------------------
    def status(self):
        """Queue depth, oldest unsent age, link statistics, silent modules, battery warnings."""
        now = self.clock()
        q = self.queue
        oldest = q.oldest_created() if q else None
        st = self.config.status
        s = self.session
        return {
            "state": "online", "site": self.site, "conc": self.conc, "boot": self.boot, "ts": int(now),
            "queue": {"batches": len(q.entries) if q else 0, "records": q.records() if q else 0,
                      "bytes": q.bytes if q else 0, "max_bytes": self.config.queue.max_bytes,
                      "oldest_age_s": None if oldest is None else max(0, int(now - oldest)),
                      "full": self._full, "thinned_records": q.thinned_records if q else 0,
                      "refused_appends": q.refused_appends if q else 0,
                      "corrupt_records": q.corrupt_records if q else 0, "torn_tails": q.torn_tails if q else 0,
                      "pending_records": self._pending_records, "inflight": len(self._inflight),
                      "rejected_held": len(self._held)},
            "link": None if s is None else {
                "concentrator_boot": s.boot, "durable": s.durable, "records_in": s.records_in,
                "good_frames": s.reader.good_frames, "bad_frames": s.reader.bad_frames,
                "bad_records": s.bad_records, "duplicates": s.duplicates, "unknown_frames": s.unknown_frames, "lost": s.lost,
                "concentrator": self.concentrator},
            "mqtt": None if self.mqtt is None else {"connected": self.mqtt.connected,
                                                   "connects": self.mqtt.connects,
                                                   "disconnects": self.mqtt.disconnects},
            "counters": dict(self.counters),
            "ota": self.updates.status() if self.queue else None,
            "roster": self.roster.status() if self.queue else None,
            "broadcast_keys": self.broadcasts.status(list(self.modules)) if self.queue else None,
            "modules": {"known": len(self.modules),
                        "silent": sorted("%04x" % a for a, m in self.modules.items()
                                         if now - m["last_heard"] > st.silent_hours * 3600),
                        "battery_low": sorted("%04x" % a for a, m in self.modules.items()
                                              if m["battery_v"] and m["battery_v"] < st.battery_low_v)},
        }

    def _publish_status(self):
        status = self.status()
        full = dict(status, module_table={"%04x" % a: m for a, m in self.modules.items()})
        try:
            write_atomic(os.path.join(self.config.queue.dir, "status.json"), json.dumps(full, indent=1).encode())
        except OSError as e:
            log.warning("cannot write status.json: %s", e)
        if self.mqtt is not None:
            self.mqtt.publish("status", json.dumps(status), retain=True)
