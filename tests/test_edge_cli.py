"""The agent's config validation and the operator commands (balans agent ..., balans diag ...)."""

import argparse
import json

import pytest

from edge_agent import cli
from edge_agent.config import ConfigError, from_dict, load, to_toml
from tests.edge_fixtures import Keys, agent_config


def parse(configure, argv):
    p = argparse.ArgumentParser()
    configure(p)
    return p.parse_args(argv)


@pytest.mark.parametrize("change, message", [
    (lambda c: c["mqtt"].update(port="1883"), "[mqtt] port must be int"),
    (lambda c: c["mqtt"].update(port=70000), "[mqtt] port must be 1..65535"),
    (lambda c: c["queue"].update(max_bytes=10), "[queue] max_bytes must be at least twice segment_bytes"),
    (lambda c: c["concentrator"].update(id="a/b"), "[concentrator] id must be 1..64 characters"),
    (lambda c: c["concentrator"].pop("site"), "[concentrator] site is required"),
    (lambda c: c["mqtt"].update(colour="red"), "[mqtt] has unknown key(s) ['colour']"),
    (lambda c: c.update(extra={}), "unknown section(s) ['extra']"),
    (lambda c: c["mqtt"].update(cert_file="x.pem"), "[mqtt] cert_file and key_file go together"),
    (lambda c: c["central"].update(keys={}), "[central] keys must name at least one"),
])
def test_bad_configs_are_refused_with_a_message_naming_the_place(tmp_path, change, message):
    c = agent_config(tmp_path, Keys(tmp_path), 1883)
    change(c)
    with pytest.raises(ConfigError) as e:
        from_dict(c)
    assert message in str(e.value)


def test_toml_round_trip_and_relative_paths(tmp_path):
    k = Keys(tmp_path)
    c = agent_config(tmp_path, k, 1883)
    c["queue"]["dir"] = "queue"
    (tmp_path / "agent.toml").write_text(to_toml(c))
    cfg = load(str(tmp_path / "agent.toml"))
    assert cfg.queue.dir == str(tmp_path / "queue")
    assert cfg.mqtt.port == 1883 and cfg.queue.flush_s == 0.05
    (tmp_path / "bad.toml").write_text("[mqtt\nport = 1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load(str(tmp_path / "bad.toml"))
    assert cli.run_agent(parse(cli.configure_agent, ["check", "--config", str(tmp_path / "agent.toml")])) == 0


def test_the_example_config_is_valid():
    from pathlib import Path

    cfg = load(str(Path(__file__).parent.parent / "edge_agent" / "agent.example.toml"))
    assert cfg.mqtt.tls and cfg.queue.max_bytes == 256 << 20


def test_status_and_diag_read_what_the_agent_wrote(tmp_path, capsys):
    k = Keys(tmp_path)
    c = agent_config(tmp_path, k, 1883)
    (tmp_path / "agent.toml").write_text(to_toml(c))
    (tmp_path / "queue").mkdir()
    now = 1767225600
    status = {"state": "online", "site": "s1", "conc": "c-0001", "boot": 3, "ts": now,
              "queue": {"batches": 2, "records": 10, "bytes": 4000, "max_bytes": 64 << 20, "oldest_age_s": 120,
                        "full": False, "thinned_records": 0, "refused_appends": 0, "corrupt_records": 0,
                        "torn_tails": 1, "pending_records": 0, "inflight": 2},
              "link": None, "mqtt": {"connected": False, "connects": 1, "disconnects": 1},
              "counters": {"batches_sent": 5, "acks": 3, "acks_duplicate": 1, "acks_rejected": 0, "acks_forged": 0,
                           "commands_forwarded": 0, "commands_refused": 2, "results": 0},
              "modules": {"known": 2, "silent": ["0011"], "battery_low": ["0011"]},
              "module_table": {"0010": {"last_heard": now - 600, "battery_v": 3.6, "rssi": -80, "hops": 3,
                                        "missing_hours": 0},
                               "0011": {"last_heard": now - 5 * 3600, "battery_v": 3.1, "rssi": -101, "hops": 1,
                                        "missing_hours": 7}}}
    (tmp_path / "queue" / "status.json").write_text(json.dumps(status))
    conf = ["--config", str(tmp_path / "agent.toml")]
    assert cli.run_agent(parse(cli.configure_agent, ["status"] + conf)) == 0
    out = capsys.readouterr().out
    assert "2 batches, 10 readings" in out and "DISCONNECTED" in out and "silent: 0011" in out
    views = {}
    for view in ("network", "silent", "battery", "gaps"):
        assert cli.run_diag(parse(cli.configure_diag, conf + [view])) == 0
        views[view] = capsys.readouterr().out
    lines = views["network"].splitlines()[1:]
    assert [ln.split()[0] for ln in lines] == ["0011", "0010"]  # by hop depth
    assert "1 of 2 modules silent" in views["silent"]
    assert views["battery"].splitlines()[0].startswith("0011") and "LOW" in views["battery"]
    assert "0011   7 hours missing" in views["gaps"]


def test_status_without_a_running_agent_says_so(tmp_path):
    c = agent_config(tmp_path, Keys(tmp_path), 1883)
    (tmp_path / "agent.toml").write_text(to_toml(c))
    with pytest.raises(RuntimeError, match="is the agent running"):
        cli.run_agent(parse(cli.configure_agent, ["status", "--config", str(tmp_path / "agent.toml")]))


def test_keygen_refuses_to_overwrite_a_key(tmp_path, capsys):
    path = str(tmp_path / "k.pem")
    assert cli.run_agent(parse(cli.configure_agent, ["keygen", path, "--public", path + ".pub"])) == 0
    assert "BEGIN PUBLIC KEY" in capsys.readouterr().out
    with pytest.raises(ValueError, match="refusing to overwrite"):
        cli.run_agent(parse(cli.configure_agent, ["keygen", path]))
