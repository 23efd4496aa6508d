"""The brokers BALANS starts for itself carry QoS 1 messages end to end."""

import threading

import paho.mqtt.client as mqtt
import pytest

from balans.services import EmbeddedBroker, Mosquitto, mosquitto_binary


def roundtrip(host, port):
    got = threading.Event()
    received = []

    def on_message(client, userdata, msg):
        received.append(msg.payload)
        got.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.connect(host, port)
    sub.loop_start()
    sub.subscribe("balans-test/roundtrip", qos=1)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.connect(host, port)
    pub.loop_start()
    try:
        for _ in range(50):  # the subscription may not be active yet: publish until one arrives
            pub.publish("balans-test/roundtrip", b"reading", qos=1).wait_for_publish(5)
            if got.wait(0.2):
                break
    finally:
        pub.loop_stop()
        sub.loop_stop()
        pub.disconnect()
        sub.disconnect()
    return received


def test_embedded_broker_delivers():
    broker = EmbeddedBroker().start()
    try:
        assert b"reading" in roundtrip(broker.host, broker.port)
    finally:
        broker.stop()


@pytest.mark.skipif(mosquitto_binary() is None, reason="Mosquitto is not installed (apt-get install mosquitto)")
def test_private_mosquitto_starts_and_stops():
    with Mosquitto() as broker:
        assert b"reading" in roundtrip(broker.host, broker.port)
    assert broker.proc is None
