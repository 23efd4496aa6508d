"""The agent over TLS with a client certificate, against a Mosquitto that requires both."""

import datetime
import ipaddress
import os
import subprocess
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from balans.services import free_port, mosquitto_binary, port_open
from edge_agent.agent import Agent
from protocol.batch import Record
from tests.edge_fixtures import Acknowledger, Keys, agent_config


def _cert(path, name, issuer_key=None, issuer_name=None, ca=False):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name or subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
    cert = b.sign(issuer_key or key, hashes.SHA256())
    (path / (name + ".crt")).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (path / (name + ".key")).write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
    return key, subject


@pytest.fixture
def tls_broker(tmp_path):
    if mosquitto_binary() is None:
        pytest.skip("Mosquitto is not installed")
    ca_key, ca_name = _cert(tmp_path, "ca", ca=True)
    _cert(tmp_path, "server", ca_key, ca_name)
    _cert(tmp_path, "agent", ca_key, ca_name)
    port, plain = free_port(), free_port()
    conf = tmp_path / "mosquitto.conf"
    # as root, Mosquitto drops to its own user, which cannot read pytest's private tmp dirs
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(user + "per_listener_settings false\nallow_anonymous true\nlog_dest none\n"
                    "listener %d 127.0.0.1\ncafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n"
                    "require_certificate true\nlistener %d 127.0.0.1\n" % (port, tmp_path, tmp_path, tmp_path, plain))
    proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not (port_open("127.0.0.1", port) and port_open("127.0.0.1", plain)):
        assert proc.poll() is None and time.monotonic() < deadline, "mosquitto with TLS did not start"
        time.sleep(0.05)
    yield port, plain
    proc.terminate()
    proc.wait()


def test_batches_go_over_tls_with_a_client_certificate(tmp_path, tls_broker):
    port, plain = tls_broker
    keys = Keys(tmp_path)
    ack = Acknowledger(keys, "127.0.0.1", plain)  # central on the broker's plain listener
    cfg = agent_config(tmp_path, keys, port)
    cfg["mqtt"].update(tls=True, ca_file=str(tmp_path / "ca.crt"), cert_file=str(tmp_path / "agent.crt"),
                       key_file=str(tmp_path / "agent.key"))
    agent = Agent(cfg).start()
    try:
        agent.inject([Record("0010.0", 1767225600, "1-0:1.8.0", 42)])
        assert agent.wait_idle(20)
        assert ack.readings == {("0010.0", "1-0:1.8.0", 1767225600): 42}
        assert agent.mqtt.connected
    finally:
        agent.stop()
        ack.stop()
