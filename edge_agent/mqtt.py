"""The agent's MQTT connection: paho-mqtt 2.x behind a small interface.

QoS 1 everywhere; a fixed client id with a persistent session (clean_session
False), so acknowledgements and commands published while the agent is away
wait at the broker; a retained last will marks the concentrator offline;
paho's own loop thread reconnects with exponential backoff. paho keeps nothing
on disk, so it is never trusted with data: a batch stays in the durable queue
until central's signed acknowledgement names it. Incoming messages and
connection changes go to ``inbox`` for the agent's one owner thread.
"""

import json
import queue
import ssl

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

PREFIX = "balans/v1"


def topic(site, conc, leaf):
    """``balans/v1/<site>/<conc>/<leaf>``; leaf is batch, ack, cmd, result, status or ota."""
    return "%s/%s/%s/%s" % (PREFIX, site, conc, leaf)


class Mqtt:
    def __init__(self, cfg, site, conc):
        self.cfg = cfg
        self.topics = {leaf: topic(site, conc, leaf) for leaf in ("batch", "ack", "cmd", "result", "status", "ota")}
        self.inbox = queue.Queue()
        self.connected = False
        self.connects = 0
        self.disconnects = 0
        c = paho.Client(CallbackAPIVersion.VERSION2, client_id=cfg.client_id, clean_session=False,
                        protocol=paho.MQTTv311)
        if cfg.tls:
            c.tls_set(ca_certs=cfg.ca_file or None, certfile=cfg.cert_file or None, keyfile=cfg.key_file or None,
                      tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if cfg.username:
            password = None
            if cfg.password_file:
                with open(cfg.password_file) as f:
                    password = f.read().strip()
            c.username_pw_set(cfg.username, password)
        c.will_set(self.topics["status"], json.dumps({"state": "offline", "conc": conc, "site": site}),
                   qos=1, retain=True)
        c.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)
        # our own window (max_inflight batches) plus room for status and results
        c.max_inflight_messages_set(cfg.max_inflight + 4)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        self.client = c

    def start(self):
        self.client.connect_async(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        self.client.loop_start()

    def stop(self, farewell=None):
        if farewell is not None and self.connected:
            self.client.publish(self.topics["status"], farewell, qos=1, retain=True).wait_for_publish(2)
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, leaf, payload, retain=False):
        """Hand one message to paho (QoS 1); False when not connected (nothing is queued then)."""
        if not self.connected:
            return False
        info = self.client.publish(self.topics[leaf], payload, qos=1, retain=retain)
        return info.rc == paho.MQTT_ERR_SUCCESS

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self.inbox.put(("refused", str(reason_code)))
            return
        client.subscribe([(self.topics["ack"], 1), (self.topics["cmd"], 1)])
        self.connected = True
        self.connects += 1
        self.inbox.put(("connected", None))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if self.connected:
            self.disconnects += 1
        self.connected = False
        self.inbox.put(("disconnected", str(reason_code)))

    def _on_message(self, client, userdata, message):
        self.inbox.put((message.topic, message.payload))
