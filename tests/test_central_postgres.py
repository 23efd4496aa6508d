"""The same store on the real PostgreSQL server, in a database of its own dropped afterwards."""

import uuid

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from balans.services import postgres_url
from central import balance
from central.ingest import Ingestor
from central.store import MEASURED, open_store
from central.trust import StoreVerifier
from protocol import obis
from protocol.batch import Batch, Record, Signer, Verifier
from tests import central_fixtures as fx

psycopg = pytest.importorskip("psycopg")
SERVER = postgres_url()
pytestmark = pytest.mark.skipif(SERVER is None, reason="no PostgreSQL server (set BALANS_TEST_PG)")


@pytest.fixture
def store():
    name = "balans_test_%s" % uuid.uuid4().hex[:10]
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute("CREATE DATABASE %s" % name)
    url = SERVER.rsplit("/", 1)[0] + "/" + name
    s = open_store(url)
    s.save_model(fx.model())
    yield s
    s.close()
    with psycopg.connect(SERVER, autocommit=True) as admin:
        admin.execute("DROP DATABASE %s" % name)


def test_day_rows_and_balance_on_postgres(store):
    assert type(store).__name__ == "PostgresStore"
    fx.put_constant_day(store, {"HM": 10.0, "EM1": 4.0, "EM2": 5.0, "f0": 2.0, "f1": 1.5, "f2": 2.5, "f3": 2.5})
    index = store.load_model().meter_index()
    store.put_hourly([index["f0"]], [fx.DAY * 24 + 7], [0.125])  # merges into the stored day
    vals, qual = store.load_days(fx.DAY, 1, len(index))
    assert vals[index["f0"], 6:8].tolist() == [2.0, 0.125] and qual[index["f0"], 7] == MEASURED
    rows = {r["group_id"]: r for r in balance.compute(store, fx.DAY)}
    assert rows["E2"]["members"] == pytest.approx(120.0)
    assert rows["E1"]["members"] == pytest.approx(2.0 * 23 + 0.125 + 1.5 * 24)
    assert store.take_stale() == [fx.DAY]


def test_ingest_on_postgres_is_idempotent(store):
    key = Ed25519PrivateKey.generate()
    verifier = Verifier()
    verifier.add_key(b"k", key.public_key(), "c-9")
    ingestor = Ingestor(store, verifier, Signer(Ed25519PrivateKey.generate(), b"central"))
    t0 = fx.DAY * 86400
    records = [Record("f3", t0 + h * 3600, obis.code("electricity"), 2**40 + h * 250) for h in range(3)]
    payload = Signer(key, b"k").sign(Batch("c-9", 4294967295, 2**64 - 1, records))
    topic = "balans/v1/s/c-9/batch"
    assert ingestor.handle(topic, payload).status == "stored"
    assert ingestor.handle(topic, payload).status == "duplicate"
    assert store.register_span("f3", obis.code("electricity"), t0, t0 + 7200)[-1] == (t0 + 7200, 2**40 + 500)
    vals, _ = store.load_days(fx.DAY, 1, 7)
    assert np.allclose(vals[store.load_model().meter_index()["f3"], :2], 0.25)
    assert store.count("batches") == 1


def test_concentrator_keys_and_the_quarantine_log_on_postgres(store):
    key = Ed25519PrivateKey.generate()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    with store.transaction():
        store.add_concentrator_key("k-pg", "c-9", pem)
    verifier = StoreVerifier(store)
    ingestor = Ingestor(store, verifier, Signer(Ed25519PrivateKey.generate(), b"central"))
    batch = Batch("c-9", 1, 1, [Record("f3", fx.DAY * 86400, obis.code("electricity"), 5)])
    assert ingestor.handle("balans/v1/s/c-9/batch", Signer(key, b"k-pg").sign(batch)).status == "stored"
    with store.transaction():
        assert store.revoke_concentrator_key("k-pg")
    verifier.reload()
    ack = ingestor.handle("balans/v1/s/c-9/batch", Signer(key, b"k-pg").sign(Batch("c-9", 1, 2, batch.records)))
    assert ack.status == "rejected"
    (received, topic, reason, size), = store.quarantine_log()
    assert topic == "balans/v1/s/c-9/batch" and "unknown key id" in reason and size > 64
