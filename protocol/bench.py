"""``balans bench protocol``: how fast the wire formats are, against baselines in the same process.

Radio frames: an HOURLY report sealed and opened (``seal_frame`` + ``open_frame``)
per second on CPython, against OpenSSL's AES-128-CCM (cryptography's AESCCM)
sealing and opening the same bytes; and on the MicroPython unix port, against
the bare AES block that our CCM is built on (protocol/bench_micropython.py).

Signed batches: a 720-record batch (one hour of 240 modules x 3 meters) signed
and verified per second, against a bare Ed25519 sign and verify of the same
payload bytes: the ratio is what CBOR and the checks cost on top of the signature.
"""

import subprocess
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESCCM

from balans.toolchain import REPO, tool
from protocol import frame, ids, messages, obis
from protocol.batch import Batch, Record, Signer, Verifier
from protocol.ccm import TAG_LEN
from protocol.cose import _sig_structure

KEY = bytes(range(16))
BATCH_RECORDS = 720  # a concentrator's 240 modules x 3 meters, one hourly total each
HOURLY = messages.Hourly(490000, 0, 150, 0x71, (123456, 7890, 4242), (300, 12, 5, 280, 9, 7))


def per_second(fn, n, repeat=3):
    """Calls of fn(i) per second: the best of ``repeat`` runs, since other load only slows a run down."""
    best = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.perf_counter() - start))
    return best


def frames_cpython(n):
    f = frame.Frame(0x1234, frame.T_DATA, 0x2A, frame.CONCENTRATOR, 0, HOURLY.encode())

    def ours(i):
        f.counter = i
        frame.open_frame(frame.seal_frame(f, KEY), KEY)

    wire = frame.seal_frame(f, KEY)
    nonce, aad = frame._nonce(wire), frame._aad(wire)
    payload = HOURLY.encode()
    openssl = AESCCM(KEY, tag_length=TAG_LEN)

    def baseline(i):
        openssl.decrypt(nonce, openssl.encrypt(nonce, payload, aad), aad)

    return per_second(ours, n), per_second(baseline, n * 10)


def frames_micropython(n):
    proc = subprocess.run([tool("micropython"), str(REPO / "protocol" / "bench_micropython.py"), str(REPO), str(n)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError("MicroPython bench failed:\n" + proc.stdout + proc.stderr)
    frames_s, blocks_s = (float(x) for x in proc.stdout.split())
    return frames_s, blocks_s


def big_batch():
    records = [Record(ids.meter_id(addr, ch), 1764316800, obis.code("electricity", 0), 1000000 + addr * 3 + ch)
               for addr in range(1, 241) for ch in range(3)]
    return Batch("c-0001", 7, 1234, records)


def batches(n):
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    signer = Signer(key, b"c-0001")
    verifier = Verifier()
    verifier.add_key(b"c-0001", key.public_key(), "c-0001")
    batch = big_batch()
    signed = signer.sign(batch)
    message = _sig_structure(b"", batch.to_cbor())
    signature = key.sign(message)
    public = key.public_key()
    return {
        "batch_records": len(batch.records),
        "batch_bytes": len(signed),
        "batch_sign_per_s": per_second(lambda i: signer.sign(batch), n),
        "batch_verify_per_s": per_second(lambda i: verifier.verify(signed), n),
        "ed25519_sign_per_s": per_second(lambda i: key.sign(message), n),
        "ed25519_verify_per_s": per_second(lambda i: public.verify(signature, message), n),
    }


def bench_protocol(args):
    quick = getattr(args, "quick", False)
    n_frames = 200 if quick else 3000
    ours, openssl = frames_cpython(n_frames)
    mp_frames, mp_blocks = frames_micropython(n_frames)
    figures = {
        "frames_per_s_cpython": ours,
        "aesccm_openssl_per_s": openssl,
        "openssl_speedup": openssl / ours,
        "frames_per_s_micropython": mp_frames,
        "aes_blocks_per_s_micropython": mp_blocks,
        "frame_cost_in_aes_blocks_micropython": mp_blocks / mp_frames,
    }
    figures.update(batches(5 if quick else 60))
    figures["sign_cost_vs_ed25519"] = figures["ed25519_sign_per_s"] / figures["batch_sign_per_s"]
    figures["verify_cost_vs_ed25519"] = figures["ed25519_verify_per_s"] / figures["batch_verify_per_s"]
    return figures


BENCHMARKS = {"protocol": bench_protocol}
