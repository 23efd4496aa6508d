"""Ingest of signed batches: verify, quarantine, dedup, derive hours, acknowledge after commit."""

import argparse
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from central.cli import do_import
from central.ingest import MODEL_RELOAD_S, Ingestor, MqttIngest
from central.store import ESTIMATED, INTERPOLATED, MEASURED, open_store
from protocol import obis
from protocol.batch import AckVerifier, Batch, Record, Signer, Verifier
from tests import central_fixtures as fx

T0 = fx.DAY * 86400
KWH = obis.code("electricity")


@pytest.fixture
def world(tmp_path):
    store = open_store(str(tmp_path / "balans.db"))
    store.save_model(fx.model())
    conc_key, central_key = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    verifier = Verifier()
    verifier.add_key(b"c1", conc_key.public_key(), "c-0001")
    acks = AckVerifier()
    acks.add_key(b"central", central_key.public_key())
    ingestor = Ingestor(store, verifier, Signer(central_key, b"central"))
    yield store, ingestor, Signer(conc_key, b"c1"), acks
    store.close()


TOPIC = "balans/v1/site1/c-0001/batch"


def readings(meter, start_hour, pulses):
    return [Record(meter, T0 + (start_hour + i) * 3600, KWH, p) for i, p in enumerate(pulses)]


def test_a_batch_is_stored_once_and_hours_derived(world):
    store, ingestor, signer, acks = world
    batch = Batch("c-0001", 3, 10, readings("f0", 0, [1000, 2500, 4000]), [["f0", T0 + 60, 1, 0]])
    ack = ingestor.handle(TOPIC, signer.sign(batch))
    assert (ack.status, ack.key) == ("stored", ("c-0001", 3, 10))
    assert acks.verify(ingestor.signed_ack(ack)).status == "stored"
    again = ingestor.handle(TOPIC, signer.sign(batch))
    assert again.status == "duplicate"
    assert store.count("registers") == 3 and store.count("batches") == 1
    assert store.events_between(T0, T0 + 3600) == [("f0", T0 + 60, "magnet", 0)]
    row = store.load_model().meter_index()["f0"]
    vals, qual = store.load_days(fx.DAY, 1, 7)
    assert vals[row, :2].tolist() == [1.5, 1.5] and qual[row, :2].tolist() == [MEASURED] * 2


def test_late_readings_fill_the_span_they_fall_into(world):
    store, ingestor, signer, _ = world
    ingestor.handle(TOPIC, signer.sign(Batch("c-0001", 3, 1, readings("f0", 0, [0]) + readings("f0", 4, [4000]))))
    row = store.load_model().meter_index()["f0"]
    vals, qual = store.load_days(fx.DAY, 1, 7)
    assert vals[row, :4].tolist() == [1.0] * 4 and set(qual[row, :4]) == {ESTIMATED}
    store.take_stale()
    ingestor.handle(TOPIC, signer.sign(Batch("c-0001", 3, 2, readings("f0", 1, [500, 1000, 3000]))))
    vals, qual = store.load_days(fx.DAY, 1, 7)
    assert vals[row, :4].tolist() == [0.5, 0.5, 2.0, 1.0]
    assert qual[row, :4].tolist() == [MEASURED] * 4
    assert store.take_stale() == [fx.DAY]


def test_rollover_and_replacement(world):
    store, ingestor, signer, _ = world
    m = store.load_model()
    m.meters["f1"].rollover = 10000
    store.save_model(m)
    ingestor.reload_model()
    store.add_replacement("f0", T0 + 3600 + 1800, 5000, 0)
    ingestor.handle(TOPIC, signer.sign(Batch("c-0001", 1, 1, readings("f1", 0, [9500, 500])
                                              + readings("f0", 0, [3000, 4000, 700]))))
    index = m.meter_index()
    vals, qual = store.load_days(fx.DAY, 1, 7)
    assert vals[index["f1"], 0] == 1.0
    assert vals[index["f0"], :2].tolist() == [1.0, 1.0 + 0.7]


def test_one_lost_reading_is_interpolated(world):
    store, ingestor, signer, _ = world
    ingestor.handle(TOPIC, signer.sign(Batch("c-0001", 1, 1, readings("f2", 0, [0]) + readings("f2", 2, [3000]))))
    row = store.load_model().meter_index()["f2"]
    vals, qual = store.load_days(fx.DAY, 1, 7)
    assert vals[row, :2].tolist() == [1.5, 1.5] and qual[row, :2].tolist() == [INTERPOLATED] * 2


def test_bad_batches_are_quarantined_with_the_reason(world):
    store, ingestor, signer, _ = world
    good = signer.sign(Batch("c-0001", 2, 7, readings("f0", 0, [1])))
    forged = bytearray(good)
    forged[-5] ^= 1
    stranger = Signer(Ed25519PrivateKey.generate(), b"c1").sign(Batch("c-0001", 2, 8, []))
    cases = [
        (TOPIC, bytes(forged), "bad signature", (2, 7)),
        (TOPIC, stranger, "bad signature", (2, 8)),
        (TOPIC, b"\xff\x00garbage", "COSE_Sign1", (0, 0)),
        ("balans/v1/site1/c-0002/batch", good, "arrived on the topic", (0, 0)),
        ("elsewhere/c-0001/batch", good, "is not balans/v1", (0, 0)),
        (TOPIC, Signer(Ed25519PrivateKey.generate(), b"zz").sign(Batch("c-0001", 1, 1, [])), "unknown key", (1, 1)),
    ]
    for topic, payload, reason, key in cases:
        ack = ingestor.handle(topic, payload)
        assert ack.status == "rejected" and reason in ack.reason
        assert (ack.boot, ack.seq) == key
    assert [reason in r for (_, r), (_, _, reason, _) in zip(store.quarantined(), cases)] == [True] * len(cases)
    assert store.count("batches") == 0 and store.count("registers") == 0
    assert ingestor.handle(TOPIC, good).status == "stored"  # the real one still goes in


def test_readings_of_unknown_meters_are_kept_for_later(world):
    store, ingestor, signer, _ = world
    ack = ingestor.handle(TOPIC, signer.sign(Batch("c-0001", 1, 1, readings("002a.1", 0, [0, 1000]))))
    assert ack.status == "stored" and store.count("registers") == 2 and store.count("day_values") == 0


def test_mqtt_shared_subscription_acks_after_commit(world):
    import threading

    import paho.mqtt.client as mqtt

    from balans.services import find_broker

    store, ingestor, signer, acks = world
    host, port, _, handle = find_broker()
    prefix = "test-%s/balans/v1" % uuid.uuid4().hex[:8]
    ingestor.prefix = prefix
    runner = MqttIngest(ingestor, host, port, share_group="g" + uuid.uuid4().hex[:6]).start()
    got, done = [], threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)

    def on_message(c, u, msg):
        ack = acks.verify(msg.payload)
        got.append((msg.topic, ack.status, ack.seq, store.count("batches")))
        if len(got) == 2:
            done.set()

    client.on_message = on_message
    try:
        client.connect(host, port)
        client.subscribe(prefix + "/site1/c-0001/ack", qos=1)
        client.loop_start()
        import time
        time.sleep(0.3)
        for seq in (1, 1):
            client.publish(prefix + "/site1/c-0001/batch",
                           signer.sign(Batch("c-0001", 1, seq, readings("f0", 0, [0, 10]))), qos=1)
        assert done.wait(10), got
    finally:
        client.loop_stop()
        client.disconnect()
        runner.stop()
        if handle:
            handle.stop()
    assert sorted(s for _, s, _, _ in got) == ["duplicate", "stored"]
    assert all(topic == prefix + "/site1/c-0001/ack" and n == 1 for topic, _, _, n in got)


def test_readings_of_a_meter_registered_late_get_their_hours(world, tmp_path):
    """Readings may arrive before the operator registers their meter: they are kept and derived later."""
    store, ingestor, signer, _ = world
    batch = Batch("c-0001", 5, 1, readings("late-1", 0, [0, 1000, 3000]))
    assert ingestor.handle(TOPIC, signer.sign(batch)).status == "stored"
    # the operator registers the meter from another process while this worker runs
    model = store.load_model()
    group = next(g for g in model.groups.values() if g.resource == "electricity")
    meters = tmp_path / "meters.csv"
    meters.write_text("meter_id,group_id,resource\nlate-1,%s,electricity\n" % group.id)
    other = open_store(str(tmp_path / "balans.db"))
    args = argparse.Namespace(groups=None, meters=str(meters), readings=None, events=None)
    assert do_import(other, args) == 0
    other.close()
    n = len(model.meters) + 1
    row = store.load_model().meter_index()["late-1"]
    vals, qual = store.load_days(fx.DAY, 1, n)
    assert vals[row, :2].tolist() == [1.0, 2.0] and qual[row, :2].tolist() == [MEASURED] * 2
    # the worker learns the meter at its next reading of it (at most MODEL_RELOAD_S after the last reload)
    ingestor._reloaded -= MODEL_RELOAD_S
    ingestor.handle(TOPIC, signer.sign(Batch("c-0001", 5, 2, readings("late-1", 3, [3500]))))
    vals, qual = store.load_days(fx.DAY, 1, n)
    assert vals[row, :3].tolist() == [1.0, 2.0, 0.5]


def test_waiting_batches_share_one_commit_and_a_failure_stores_none(world):
    store, ingestor, signer, _ = world
    first = signer.sign(Batch("c-0001", 7, 1, readings("f0", 0, [0, 1000])))
    second = signer.sign(Batch("c-0001", 7, 2, readings("f0", 2, [2500, 4000])))
    forged = Signer(Ed25519PrivateKey.generate(), b"c1").sign(Batch("c-0001", 7, 3, readings("f1", 0, [0, 10])))
    acks = ingestor.handle_many([(TOPIC, first), (TOPIC, second), (TOPIC, first), (TOPIC, forged)])
    assert [a.status for a in acks] == ["stored", "stored", "duplicate", "rejected"]
    assert store.count("batches") == 2 and len(store.quarantined()) == 1
    row = store.load_model().meter_index()["f0"]
    vals, qual = store.load_days(fx.DAY, 1, 7)
    # the two batches' spans are derived together, across the hour between them
    assert vals[row, :3].tolist() == [1.0, 1.5, 1.5] and qual[row, :3].tolist() == [MEASURED] * 3

    third = signer.sign(Batch("c-0001", 7, 4, readings("f0", 4, [5000])))
    store.add_events = None  # the store fails half way through the group: nothing of it stays
    with pytest.raises(TypeError):
        ingestor.handle_many([(TOPIC, third), (TOPIC, signer.sign(Batch("c-0001", 7, 5, readings("f0", 5, [6000]))))])
    del store.add_events
    assert store.count("batches") == 2 and store.count("registers") == 4


def test_the_ingest_benchmark_stores_every_batch_both_ways():
    from central.bench import ingest

    figures = ingest(argparse.Namespace(quick=True, db=None))
    assert figures["batches"] == 100 and figures["backend"] == "sqlite"
    assert figures["batches_per_s_one"] > 0 and figures["batches_per_s_grouped"] > 0
