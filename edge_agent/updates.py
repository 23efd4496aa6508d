"""Firmware updates the agent hands to its concentrator: checked first, queued on disk, served over the link.

An update arrives as a signed MQTT command (kind ``update``, edge_agent/commands.py: central's or
the operator's key) or as a local file (``balans agent update``). Before anything is queued the
bundle must be the vendor's (``[ota] vendor_key``), for the D100FC class, whole (its table and
image match the signed manifest) and name at most transfer.MAX_TARGETS modules (or all).

The queue is ``<queue dir>/ota/``: ``<n>.bota`` (the bundle) and ``<n>.json`` (targets, origin,
state), the JSON written last and atomically, so a job exists only whole. Jobs run one at a
time, oldest first. For the running job the agent is the concentrator's parent in the update's
hop protocol (firmware/common/ota/transfer.py over link L_OTA frames): it announces the update,
answers each NEED of the concentrator with that unit's fragments, and takes the modules'
OTA_STATUS reports (L_OTA_STATUS) as progress. Once every target holds the image (or refused it)
the agent sends ACTIVATE: the whole fleet switches at one time (transfer.ACTIVATE_S later), not
relay by relay. A job is over when every target installed it or refused it; a restarted agent resumes its job, and the concentrator resumes its copy from flash.
"""

import json
import os

from firmware.common.ota import manifest as mf, transfer
from protocol import link, messages
from protocol.errors import ProtocolError
from edge_agent.queue import write_atomic
from tools.flash import bundle

ANNOUNCE_S = 10.0  # until the concentrator asks, the announcement is repeated this often
LOOK_S = 5.0  # how often the queue directory is looked at for a new job (``balans agent update`` writes there)
STATE_NAMES = {messages.OTA_LOADING: "loading", messages.OTA_DONE: "downloaded", messages.OTA_REFUSED: "refused",
               messages.OTA_INSTALLED: "installed", messages.OTA_FAILED: "failed"}
FINAL = ("installed", "refused", "failed")
HOLDING = ("downloaded",) + FINAL
CONCENTRATOR = 0


def read_vendor_key(path):
    """The vendor's 32-byte Ed25519 update key (the file that comes with every release)."""
    with open(path, "rb") as f:
        key = f.read()
    if len(key) != 32:
        raise ValueError("%s must hold the vendor's 32-byte update key, not %d bytes" % (path, len(key)))
    return key


def check(data, vendor_key, targets):
    """The Bundle in ``data`` if it may go to the modules; ProtocolError (AuthError for a bad signature) if not."""
    if vendor_key is None:
        raise ProtocolError("no vendor key configured ([ota] vendor_key): updates are refused")
    b = bundle.read(bytes(data))
    b.verify(vendor_key)
    if b.manifest.class_id != mf.CLASS_D100FC:
        raise ProtocolError("the bundle is for another device class, not D100FC modules")
    if len(targets) > transfer.MAX_TARGETS or any(type(a) is not int or not 0 < a < 0xFFFF for a in targets):
        raise ProtocolError("targets must be at most %d module addresses (none: every module)" % transfer.MAX_TARGETS)
    return b


class Updates:
    def __init__(self, queue_dir, vendor_key, known=lambda: ((), 0)):
        """``known()``: (addresses of the modules the concentrator reported, how many it serves); an update
        for all is over when that many modules, every one reported among them, installed or refused it."""
        self.dir = os.path.join(queue_dir, "ota")
        self.vendor_key = vendor_key
        self.known = known
        self.job = None  # the running job's dict, with "source" (a transfer.Source)
        self._announced = None
        self._looked = None
        self.events = []  # progress for the ota topic, taken by the agent

    def submit(self, data, targets=(), origin="local"):
        """Check and queue an update; returns the job (id, session, targets) or raises ProtocolError."""
        b = check(data, self.vendor_key, list(targets))
        os.makedirs(self.dir, exist_ok=True)
        number = max([int(n.split(".")[0]) for n in os.listdir(self.dir) if n.endswith(".json")] + [0]) + 1
        job = {"id": number, "session": b.manifest.seq & 0xFFFF, "seq": b.manifest.seq, "targets": list(targets),
               "origin": origin, "state": "queued", "modules": {}}
        write_atomic(os.path.join(self.dir, "%d.bota" % number), b.encode())
        self._save(job)
        return {k: job[k] for k in ("id", "session", "seq", "targets", "origin", "state")}

    def _save(self, job):
        write_atomic(os.path.join(self.dir, "%d.json" % job["id"]),
                     json.dumps({k: v for k, v in job.items() if k != "source"}).encode())

    def _next(self):
        """The oldest job not over, loaded with its bundle, or None."""
        try:
            names = sorted((n for n in os.listdir(self.dir) if n.endswith(".json")), key=lambda n: int(n[:-5]))
        except FileNotFoundError:
            return None
        for name in names:
            with open(os.path.join(self.dir, name)) as f:
                job = json.load(f)
            if job["state"] in ("queued", "running"):
                with open(os.path.join(self.dir, "%d.bota" % job["id"]), "rb") as f:
                    b = bundle.read(f.read())
                job["source"] = transfer.Source(b.envelope, b.table, b.image, b.manifest)
                return job
        return None

    def pump(self, send, now):
        """Start the next job, and announce the running one until the concentrator asks for it."""
        if self.job is None:
            if self._looked is not None and now - self._looked < LOOK_S:
                return False
            self._looked = now
            self.job = self._next()
            if self.job is None:
                return False
            self.job["state"] = "running"
            self._save(self.job)
            self._announced = None
            self._event(CONCENTRATOR, "announced", None)
        if not self.job.get("activated") and self._every_target(HOLDING):
            self.job["activated"] = True
            self._save(self.job)
            self._event(CONCENTRATOR, "activated", None)
            send(link.pack(link.L_OTA, tail=transfer.activate(self.job["session"], transfer.ACTIVATE_S)))
            return True
        if self._announced is None or (not self.job["modules"] and now - self._announced >= ANNOUNCE_S):
            self._announced = now
            send(link.pack(link.L_OTA, tail=transfer.announce(self.job["session"], self.job["targets"])))
            return True
        return False

    def on_need(self, payload, send):
        """The concentrator's NEED: answer with the unit's fragments."""
        job = self.job
        if job is None:
            return
        try:
            _, session, _, _, status, _ = transfer.parse(payload)
        except ProtocolError:
            return
        if session != job["session"]:
            return
        job["modules"].setdefault("concentrator", "loading")
        if status == transfer.DONE and job["modules"]["concentrator"] != "holds it":
            job["modules"]["concentrator"] = "holds it"
            self._save(job)
            self._event(CONCENTRATOR, "holds it", 0)
        for fragment in job["source"].answer(payload):
            send(link.pack(link.L_OTA, tail=fragment))

    def on_status(self, addr, session, state, missing):
        """A module's OTA_STATUS, relayed by the concentrator."""
        job = self.job
        if job is None or session != job["session"]:
            return
        name = STATE_NAMES.get(state, "state_%d" % state)
        job["modules"]["%04x" % addr] = name
        self._event(addr, name, missing)
        if self._every_target(FINAL):
            job["state"] = "done"
            self._event(CONCENTRATOR, "done", None)
            self.job = None
        self._save(job)

    def _every_target(self, states):
        """Every target module of the running job reported one of ``states``."""
        job = self.job
        if job["targets"]:
            targets, count = job["targets"], len(job["targets"])
        else:
            targets, count = self.known()
        reached = [a for a, s in job["modules"].items() if s in states and a != "concentrator"]
        return len(reached) >= count > 0 and all(job["modules"].get("%04x" % a) in states for a in targets)

    def _event(self, addr, state, missing):
        job = self.job
        self.events.append({"job": job["id"], "seq": job["seq"], "module": "%04x" % addr, "state": state,
                            "missing": missing})

    def status(self):
        job = self.job
        if job is None:
            return None
        states = {}
        for state in job["modules"].values():
            states[state] = states.get(state, 0) + 1
        return {"job": job["id"], "seq": job["seq"], "targets": job["targets"] or "all", "states": states}
