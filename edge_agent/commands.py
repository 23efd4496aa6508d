"""Commands from central: checked here before anything reaches the mesh.

A command is COSE_Sign1 (central's Ed25519 key, the same keys that sign
acknowledgements) over the CBOR map::

    {"v": 1, "conc": "c-0001", "id": 42, "exp": 1767225600, "kind": "relay",
     "dst": 42, "args": {"action": 0, "reason": 3}}

``id`` is unique per concentrator (any u64, central's choice), ``exp`` the unix
second after which it must not run, ``dst`` a module address or 65535 for all
(broadcasts: "group", "time"). Kinds and their args:

    limit     channel, tariff (0 all, 1..4), source (0 supplier, 1 customer), limit (pulses/hour, 0 clears)
    relay     action (0 open, 1 close, 2 auto), reason
    group     group, action (1 shed, 0 restore), duration_s          (broadcast)
    groups    groups: [u16, ...] (at most 8)
    calendar  kind, blob_id, data: bytes (sent as CONFIG_CHUNK pieces)
    time      (none)                                                  (broadcast)
    backfill  from_hour, count
    update    bundle: bytes (a signed .bota), targets: [u16, ...] (optional; dst 65535 and no
              targets: every module; dst an address: that module)   (edge_agent/updates.py)

Refused (counted, logged, reported on the result topic, never forwarded):
a bad signature or unknown key (AuthError), a replayed id or an expired
command (ReplayError), anything malformed or for another concentrator
(ProtocolError). Ids seen are kept on disk until they expire.
"""

import json

from protocol import messages
from protocol.cose import Sign1Verifier, loads
from protocol.errors import ProtocolError, ReplayError
from edge_agent.queue import write_atomic

BROADCAST = 0xFFFF
CHUNK = messages.ConfigChunk.TAIL_MAX


class Command:
    def __init__(self, cid, exp, kind, dst, messages_):
        self.id = cid
        self.exp = exp
        self.kind = kind
        self.dst = dst
        self.messages = messages_  # encoded down messages, seq 0 (the concentrator numbers them)


def _u(args, name, limit):
    v = args.get(name)
    if type(v) is not int or not 0 <= v <= limit:
        raise ProtocolError("command arg %s must be an integer 0..%d" % (name, limit))
    return v


def build_messages(kind, args, now):
    """The down messages that carry a command of ``kind``; ProtocolError if the args are wrong."""
    if kind == "limit":
        m = [messages.SetLimit(0, _u(args, "channel", 2), _u(args, "tariff", 4), _u(args, "source", 1),
                               _u(args, "limit", 0xFFFFFFFF))]
    elif kind == "relay":
        m = [messages.Relay(0, _u(args, "action", 2), _u(args, "reason", 255))]
    elif kind == "group":
        m = [messages.GroupCmd(0, _u(args, "group", 0xFFFF), _u(args, "action", 1),
                               _u(args, "duration_s", 0xFFFFFFFF))]
    elif kind == "groups":
        groups = args.get("groups")
        if not isinstance(groups, list) or len(groups) > 8:
            raise ProtocolError("command arg groups must be a list of at most 8 group ids")
        data = b"".join(_u({"g": g}, "g", 0xFFFF).to_bytes(2, "little") for g in groups)
        m = [messages.SetGroups(0, data)]
    elif kind == "calendar":
        data = args.get("data")
        if not isinstance(data, bytes) or not 0 < len(data) <= 0xFFFF:
            raise ProtocolError("command arg data must be 1..65535 bytes")
        k, blob = _u(args, "kind", 255), _u(args, "blob_id", 0xFFFF)
        m = [messages.ConfigChunk(0, k, blob, off, len(data), data[off:off + CHUNK])
             for off in range(0, len(data), CHUNK)]
    elif kind == "time":
        m = [messages.TimeSync(0, int(now), int(now * 1000) % 1000)]
    elif kind == "backfill":
        m = [messages.BackfillReq(0, _u(args, "from_hour", 0xFFFFFFFF), _u(args, "count", 0xFFFF))]
    else:
        raise ProtocolError("unknown command kind %r" % (kind,))
    for msg in m:
        msg.validate()
    return [msg.encode() for msg in m]


class CommandChecker:
    def __init__(self, conc, verifier: Sign1Verifier, seen_path, max_ttl_s):
        self.conc = conc
        self.verifier = verifier
        self.seen_path = seen_path
        self.max_ttl_s = max_ttl_s
        try:
            with open(seen_path) as f:
                self.seen = {int(k): v for k, v in json.load(f).items()}
        except (FileNotFoundError, ValueError):
            self.seen = {}

    def check(self, data, now):
        """Return the Command, or raise AuthError / ReplayError / ProtocolError."""
        _, _, payload = self.verifier.verify(data)
        body = loads(payload, "command")
        if not isinstance(body, dict) or body.get("v") != 1:
            raise ProtocolError("command must be a map with v=1")
        if set(body) - {"v", "conc", "id", "exp", "kind", "dst", "args"}:
            raise ProtocolError("unknown command fields")
        if body.get("conc") != self.conc:
            raise ProtocolError("command is for concentrator %r, not %r" % (body.get("conc"), self.conc))
        cid, exp, dst = body.get("id"), body.get("exp"), body.get("dst")
        if type(cid) is not int or not 0 <= cid < 1 << 64 or type(exp) is not int:
            raise ProtocolError("command id and exp must be integers")
        if type(dst) is not int or not 0 < dst <= BROADCAST:
            raise ProtocolError("command dst must be a module address or %d" % BROADCAST)
        if cid in self.seen:
            raise ReplayError("command %d was already received" % cid)
        if exp < now:
            raise ReplayError("command %d expired %d s ago" % (cid, now - exp))
        if exp > now + self.max_ttl_s:
            raise ProtocolError("command %d is valid for longer than %d s" % (cid, self.max_ttl_s))
        args = body.get("args", {})
        if not isinstance(args, dict):
            raise ProtocolError("command args must be a map")
        kind = body.get("kind")
        if kind == "update":
            msgs = []
            if not isinstance(args.get("bundle"), bytes) or not isinstance(args.get("targets", []), list):
                raise ProtocolError("command arg bundle must be bytes and targets a list of module addresses")
        else:
            msgs = build_messages(kind, args, now)
        if kind in ("group", "time") and dst != BROADCAST:
            raise ProtocolError("%s commands are broadcasts: dst must be %d" % (kind, BROADCAST))
        self.seen = {k: v for k, v in self.seen.items() if v >= now}
        self.seen[cid] = exp
        write_atomic(self.seen_path, json.dumps(self.seen).encode())
        cmd = Command(cid, exp, kind, dst, msgs)
        cmd.args = args
        return cmd
