"""Write tests/vectors/protocol.json: known-answer vectors of the BALANS wire formats.

Run once, by hand, when a wire format changes on purpose (and then say so in
docs/protocol.md)::

    /work/venv/bin/python tests/vectors/make_vectors.py

The tests never run this: they check that the code still produces exactly the
committed bytes, on CPython (tests/test_protocol_vectors.py) and on MicroPython
(tests/mpy/test_protocol_vectors.py). Every CCM vector is checked here against
OpenSSL (cryptography's AESCCM) before it is written.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESCCM  # noqa: E402

from protocol import frame, ids, messages, obis  # noqa: E402
from protocol.batch import Ack, Batch, Record, Signer  # noqa: E402
from protocol.ccm import CCM, TAG_LEN  # noqa: E402

MODULE_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
NETWORK_KEY = bytes.fromhex("4e4554574f524b2d4b45592d30303031")  # "NETWORK-KEY-0001"
RFC3610_KEY = bytes.fromhex("c0c1c2c3c4c5c6c7c8c9cacbcccdcecf")

CCM_INPUTS = [
    # (name, key, nonce, aad, plaintext)
    ("RFC 3610 packet vector #1", RFC3610_KEY, "00000003020100a0a1a2a3a4a5", "0001020304050607",
     "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e"),
    ("RFC 3610 packet vector #2", RFC3610_KEY, "00000004030201a0a1a2a3a4a5", "0001020304050607",
     "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"),
    ("RFC 3610 packet vector #3", RFC3610_KEY, "00000005040302a0a1a2a3a4a5", "0001020304050607",
     "08090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"),
    ("empty plaintext: tag only", MODULE_KEY, "000102030405060708090a0b0c", "a0a1a2", ""),
    ("no associated data", MODULE_KEY, "0d0c0b0a090807060504030201", "", "000102030405060708090a0b0c0d0e0f"),
    ("one block plus one byte", MODULE_KEY, "ffffffffffffffffffffffffff", "00", "00" * 17),
    ("a frame's largest payload", NETWORK_KEY, "3412" + "2a00000001000000" + "11" + "0000",
     "3412112a00000001000000", "".join("%02x" % i for i in range(39))),
]

HOURLY = messages.Hourly(hour=490000, flags=messages.FLAG_MAGNET, battery=150, tariff=0x72,
                         totals=(123456, 7890, 4242), deltas=(300, 12, 5, 280, 9, messages.DELTA_UNKNOWN))
MESSAGES = [
    HOURLY,
    messages.Registers(hour=490000, channel=0, registers=(60000, 40000, 20000, 3456, 0)),
    messages.Event(time=1764316800, code=messages.EV_MAGNET_START, channel=1, value=-5),
    messages.Diag(uptime_s=86400, restarts=2, battery_mv=3600, tx=500, rx=650, retries=7, parent=0x0011,
                  rssi=-87, hops=3),
    messages.Ack(seq=513, status=messages.ST_REFUSED, detail=4),
    messages.OtaStatus(session=7, state=messages.OTA_DONE, missing=0),
    messages.TimeSync(seq=1, unix=1764316800, ms=250),
    messages.ConfigChunk(seq=9, kind=1, blob_id=0x0102, offset=29, total=64, data=b"tariff calendar piece"),
    messages.SetLimit(seq=10, channel=2, tariff=0, source=1, limit=3200),
    messages.Relay(seq=11, action=messages.RELAY_OPEN, reason=3),
    messages.GroupCmd(seq=12, group=0x0100, action=1, duration_s=900),
    messages.BackfillReq(seq=13, from_hour=489976, count=24),
    messages.SetGroups(seq=14, groups=b"\x00\x01\x05\x00"),
    messages.Tagged(interval=1234, tag=bytes.fromhex("0102030405060708"),
                    payload=messages.GroupCmd(12, 0x0100, 1, 900).encode()),
    messages.Disclose(interval=1234, key=bytes(range(16))),
    messages.SetAnchor(seq=15, start=1764316800, interval=0, key=bytes(range(16, 32))),
]

FRAMES = [
    # (name, key, Frame[, bound: bytes authenticated after the header, not sent])
    ("hourly report, first hop", MODULE_KEY,
     frame.Frame(0x1234, frame.T_DATA | frame.F_ACK_REQ, 0x002A, frame.CONCENTRATOR, 1, HOURLY.encode())),
    ("hourly report after 3 hops", MODULE_KEY,
     frame.Frame(0x1234, frame.T_DATA | frame.F_ACK_REQ, 0x002A, frame.CONCENTRATOR, 2, HOURLY.encode(),
                 hops=3, link_src=0x0011, link_dst=frame.CONCENTRATOR)),
    ("backfilled registers", MODULE_KEY,
     frame.Frame(0x1234, frame.T_DATA | frame.F_BACKFILL, 0x002A, frame.CONCENTRATOR, 0xFFFFFFFE,
                 messages.Registers(489976, 1, (1, 2, 3, 4, 5)).encode())),
    ("group command broadcast under the network key", NETWORK_KEY,
     frame.Frame(0x1234, frame.T_BCAST, frame.CONCENTRATOR, frame.BROADCAST, 77,
                 messages.GroupCmd(12, 0x0100, 1, 900).encode())),
    ("per-hop ack, empty payload", NETWORK_KEY,
     frame.Frame(0x1234, frame.T_ACK, 0x0011, 0x002A, 5, b"")),
    ("per-hop ack of the 3-hop report: rank 300, depth 2, phase 1500; acked src 002a, counter 2 bound",
     NETWORK_KEY, frame.Frame(0x1234, frame.T_ACK, 0x0011, 0x002A, 6, bytes.fromhex("2c0102dc05")),
     bytes.fromhex("2a0002000000")),
    ("largest frame: 64 bytes", MODULE_KEY,
     frame.Frame(0xFFFF, frame.T_OTA, 0x0001, 0x0002, 0x01020304, bytes(range(frame.PAYLOAD_MAX)))),
]

BATCH_SEED = bytes(range(32))  # Ed25519 private key of the example concentrator
ACK_SEED = bytes(range(32, 64))  # and of central


def hexs(b):
    return bytes(b).hex()


def ccm_vectors():
    out = []
    for name, key, nonce, aad, plain in CCM_INPUTS:
        nonce, aad, plain = bytes.fromhex(nonce), bytes.fromhex(aad), bytes.fromhex(plain)
        sealed = bytes(CCM(key).seal(nonce, aad, plain))
        assert sealed == AESCCM(key, tag_length=TAG_LEN).encrypt(nonce, plain, aad), name
        out.append({"name": name, "key": hexs(key), "nonce": hexs(nonce), "aad": hexs(aad),
                    "plaintext": hexs(plain), "sealed": hexs(sealed)})
    return out


def frame_vectors():
    out = []
    for name, key, f, *bound in FRAMES:
        bound = bound[0] if bound else b""
        wire = frame.seal_frame(f, key, bound)
        relayed = frame.relay_header(bytearray(wire), 0x0033, 0x0044)
        out.append({"name": name, "key": hexs(key), "net_id": f.net_id, "ftype": f.ftype, "src": f.src,
                    "dst": f.dst, "counter": f.counter, "hops": f.hops, "link_src": f.link_src,
                    "link_dst": f.link_dst, "payload": hexs(f.payload), "bound": hexs(bound), "wire": hexs(wire),
                    "relayed_by_0033_to_0044": hexs(relayed)})
    return out


def message_fields(msg):
    fields = {}
    for name in type(msg).FIELDS + ((type(msg).TAIL,) if type(msg).TAIL else ()):
        value = getattr(msg, name)
        fields[name] = hexs(value) if isinstance(value, bytes) else list(value) if isinstance(value, tuple) else value
    return fields


def batch_vectors():
    signer = Signer(Ed25519PrivateKey.from_private_bytes(BATCH_SEED), b"c-0001")
    batch = Batch("c-0001", 7, 1234, [
        Record(ids.meter_id(0x002A, 0), 1764316800, obis.code("electricity", 0), 123456),
        Record(ids.meter_id(0x002A, 0), 1764316800, obis.code("electricity", 1), 60000),
        Record(ids.meter_id(0x002A, 1), 1764316800, obis.code("water", 0), 7890),
    ], [[ids.meter_id(0x002A, 1), 1764313200, messages.EV_MAGNET_START, 0]])
    central = Signer(Ed25519PrivateKey.from_private_bytes(ACK_SEED), b"central-1")
    ack = Ack("c-0001", 7, 1234, "stored", "")
    return {
        "batch": {"seed": hexs(BATCH_SEED), "kid": "c-0001", "conc": batch.conc, "boot": batch.boot,
                  "seq": batch.seq, "records": [r.as_list() for r in batch.records], "events": batch.events,
                  "payload": hexs(batch.to_cbor()), "cose_sign1": hexs(signer.sign(batch))},
        "ack": {"seed": hexs(ACK_SEED), "kid": "central-1", "conc": ack.conc, "boot": ack.boot, "seq": ack.seq,
                "status": ack.status, "reason": ack.reason, "payload": hexs(ack.to_cbor()),
                "cose_sign1": hexs(central.sign_ack(ack))},
    }


def main():
    vectors = {
        "about": "BALANS protocol known-answer vectors, written by tests/vectors/make_vectors.py; see docs/protocol.md",
        "ccm": ccm_vectors(),
        "frames": frame_vectors(),
        "messages": [{"type": type(m).__name__, "fields": message_fields(m), "hex": hexs(m.encode())}
                     for m in MESSAGES],
        "obis": [{"resource": r, "tariff": t, "code": obis.code(r, t)}
                 for r in obis.RESOURCES for t in (0, 1, 2, 3, 4, obis.PENALTY)],
        "meter_ids": [{"addr": a, "channel": c, "id": ids.meter_id(a, c)} for a, c in ((0x002A, 0), (0xBEEF, 2))],
        "cpython_only": batch_vectors(),
    }
    assert {v["type"] for v in vectors["messages"]} == {m.__name__ for m in messages.MESSAGES}
    (HERE / "protocol.json").write_text(json.dumps(vectors, indent=1) + "\n")


if __name__ == "__main__":
    main()
