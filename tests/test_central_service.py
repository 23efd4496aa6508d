"""``balans central keys ...``, ``ingest`` and ``quarantine``: central as an operator runs it.

A real ``balans central ingest`` process on a real broker, real agents publishing
signed batches, and the store checked afterwards.
"""

import argparse
import os
import subprocess
import sys
import time
import uuid

import pytest

from balans.services import find_broker
from balans.toolchain import REPO
from central import cli
from central.store import open_store
from central.trust import RELOAD_S, UNKNOWN_RELOAD_S, StoreVerifier
from edge_agent.agent import Agent
from edge_agent import cli as agent_cli
from edge_agent.config import from_dict, to_toml
from edge_agent.keys import generate
from protocol.batch import Batch, Record, Signer
from protocol.errors import AuthError
from tests.edge_fixtures import agent_config, wait_for

KWH = "1-0:1.8.0"
H = 490000  # a unix hour


class AgentKeys:
    """An agent's key files and central's public key, as agent_config wants them."""

    def __init__(self, directory, central_pub):
        os.makedirs(directory, exist_ok=True)
        self.agent_file = os.path.join(directory, "agent.pem")
        self.agent_pub = os.path.join(directory, "agent.pub")
        self.agent = generate(self.agent_file, self.agent_pub)
        self.central_pub = central_pub


def central(db, *argv):
    p = argparse.ArgumentParser()
    cli.configure(p)
    return cli.run(p.parse_args(["--db", db, *argv]))


@pytest.fixture
def broker():
    host, port, _, started = find_broker()
    yield host, port
    if started is not None:
        started.stop()


def test_keys_are_registered_listed_and_revoked_with_clear_refusals(tmp_path, capsys):
    db = str(tmp_path / "c.db")
    k = AgentKeys(str(tmp_path / "a"), None)
    assert central(db, "keys", "add", "--conc", "c-1", "--kid", "c-1-2026a", "--public", k.agent_pub) == 0
    with pytest.raises(ValueError, match="already registered"):
        central(db, "keys", "add", "--conc", "c-1", "--kid", "c-1-2026a", "--public", k.agent_pub)
    with pytest.raises(ValueError, match="not a PEM public key"):
        central(db, "keys", "add", "--conc", "c-1", "--kid", "c-1-2026b", "--public", k.agent_file)
    assert central(db, "keys", "revoke", "--kid", "c-1-2026a") == 0
    with pytest.raises(ValueError, match="no key 'c-1-2026a' in force"):
        central(db, "keys", "revoke", "--kid", "c-1-2026a")
    capsys.readouterr()
    assert central(db, "keys", "list") == 0
    listed = capsys.readouterr().out
    assert "c-1-2026a" in listed and "REVOKED" in listed


def test_a_revoked_key_is_refused_by_a_running_worker_within_the_reload_time(tmp_path):
    store = open_store(str(tmp_path / "c.db"))
    k = AgentKeys(str(tmp_path / "a"), None)
    with open(k.agent_pub) as f:
        with store.transaction():
            store.add_concentrator_key("kid-1", "c-1", f.read())
    now = [0.0]
    verifier = StoreVerifier(store, clock=lambda: now[0])
    batch = Signer(k.agent, b"kid-1").sign(Batch("c-1", 1, 1, [Record("m1", H * 3600, KWH, 5)]))
    assert verifier.verify(batch).conc == "c-1"
    with store.transaction():
        store.revoke_concentrator_key("kid-1")
    now[0] = RELOAD_S + 1
    with pytest.raises(AuthError):
        verifier.verify(batch)
    store.close()


def test_the_ingest_service_stores_signed_batches_and_quarantines_unknown_keys(tmp_path, broker):
    host, port = broker
    db = str(tmp_path / "central.db")
    central_pub = str(tmp_path / "central.pub")
    generate(str(tmp_path / "central.pem"), central_pub)
    site = "svc-" + uuid.uuid4().hex[:6]
    known = AgentKeys(str(tmp_path / "known"), central_pub)
    late = AgentKeys(str(tmp_path / "late"), central_pub)
    assert central(db, "keys", "add", "--conc", "c-1", "--kid", "agent-1", "--public", known.agent_pub) == 0

    proc = subprocess.Popen([sys.executable, "-m", "balans", "central", "--db", db, "ingest", "--broker",
                             "%s:%d" % (host, port), "--key", str(tmp_path / "central.pem"), "--kid", "central-1",
                             "--site", site], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    agents = []
    try:
        assert proc.stdout.readline().startswith("ingesting $share/balans-central/balans/v1/%s/+/batch" % site)
        # c-1 is registered; c-2's key is not (yet): its first batch is refused and quarantined
        configs = {}
        for conc, keys, kid in (("c-1", known, "agent-1"), ("c-2", late, "agent-1-c2")):
            configs[conc] = agent_config(tmp_path / conc, keys, port, host=host, site=site, conc=conc)
            configs[conc]["signing"]["kid"] = kid
            agents.append(Agent(from_dict(configs[conc])).start())
        one, two = agents
        one.inject([Record("m1", (H + i) * 3600, KWH, 100 * i) for i in range(3)])
        two.inject([Record("m2", H * 3600, KWH, 7)])
        assert one.wait_idle(30) and two.wait_idle(30)
        assert one.counters["acks"] >= 1 and two.counters["acks_rejected"] == 1
        # registered while the worker runs: the next batch under that kid is verified and stored
        assert central(db, "keys", "add", "--conc", "c-2", "--kid", "agent-1-c2", "--public", late.agent_pub) == 0
        time.sleep(UNKNOWN_RELOAD_S)  # forged kids may make the worker read the keys only this often
        two.inject([Record("m2", (H + 1) * 3600, KWH, 9)])
        assert two.wait_idle(30) and two.counters["acks_rejected"] == 1 and two.counters["acks"] == 2
        # and the batch refused before is sent again: nothing the concentrator sent is lost
        (tmp_path / "c-2.toml").write_text(to_toml(configs["c-2"]))
        p = argparse.ArgumentParser()
        agent_cli.configure_agent(p)
        assert agent_cli.run_agent(p.parse_args(["requeue", "--config", str(tmp_path / "c-2.toml")])) == 0
        assert wait_for(lambda: two.counters["requeued"] == 1) and two.wait_idle(30)
        assert two.counters["acks"] == 3 and two.counters["acks_rejected"] == 1
    finally:
        for a in agents:
            a.stop()
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0 and "stopped after" in out
    store = open_store(db)
    stored = sorted((m, int(ts), int(v)) for m, _, ts, v in store.query("SELECT * FROM registers"))
    assert stored == [("m1", (H + i) * 3600, 100 * i) for i in range(3)] + [("m2", H * 3600, 7),
                                                                             ("m2", (H + 1) * 3600, 9)]
    log = store.quarantine_log()
    assert len(log) == 1 and "unknown key id" in log[0][2] and log[0][1].endswith("/c-2/batch")
    store.close()
