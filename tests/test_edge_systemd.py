"""``balans agent run`` under systemd's notify protocol: ready, watchdog pings while alive, stopping.

The service manager is stood in for by what it is to the agent: a unix datagram
socket named in $NOTIFY_SOCKET, with $WATCHDOG_USEC set as systemd sets it.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

from balans.services import find_broker
from balans.toolchain import REPO
from edge_agent.agent import Agent
from edge_agent.cli import supervise
from edge_agent.config import from_dict, to_toml
from edge_agent.linkport import Pipe
from edge_agent.systemd import Notifier
from tests.edge_fixtures import Keys, agent_config

WATCHDOG_USEC = 1_000_000  # 1 s: the agent must ping at least every second


def receive(sock, seconds):
    """Messages the agent sends in the next ``seconds``, as lists of lines."""
    got = []
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode().split("\n"))
        except socket.timeout:
            break
    return got


def test_the_agent_says_ready_pings_the_watchdog_and_says_stopping(tmp_path):
    host, port, _, broker = find_broker()
    k = Keys(tmp_path)
    cfg = agent_config(tmp_path, k, port, host=host, conc="c-sd%d" % os.getpid())
    cfg["concentrator"]["link"] = "loop://"
    (tmp_path / "agent.toml").write_text(to_toml(cfg))
    path = str(tmp_path / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC=str(WATCHDOG_USEC))
    proc = subprocess.Popen([sys.executable, "-m", "balans", "agent", "run", "--config", str(tmp_path / "agent.toml")],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        sock.settimeout(60)  # the agent starts: Python, keys, queue, broker
        ready = sock.recv(4096).decode().split("\n")
        assert ready[0] == "READY=1" and ready[1].startswith("STATUS=concentrator c-sd")
        pings = [m for m in receive(sock, 3.0) if m[0] == "WATCHDOG=1"]
        assert len(pings) >= 4  # every half period: about 6 in 3 s
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert ["STOPPING=1"] in receive(sock, 1.0)
    finally:
        if proc.poll() is None:
            proc.kill()
        sock.close()
        if broker is not None:
            broker.stop()


def test_without_systemd_nothing_is_sent_and_foreign_watchdogs_are_ignored(tmp_path):
    assert Notifier({}).notify("READY=1") is False
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "x"), "WATCHDOG_USEC": "5000000",
                     "WATCHDOG_PID": "1"}).watchdog_s is None  # meant for another process
    n = Notifier({"NOTIFY_SOCKET": "@balans-test", "WATCHDOG_USEC": "5000000"})
    assert n.address == "\0balans-test" and n.watchdog_s == 5.0
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")}).ready("x") is False  # no manager listening


class Recorder(Notifier):
    """The real Notifier with the socket left out: it keeps what it would send."""

    def __init__(self, watchdog_s):
        super().__init__({})
        self.watchdog_s = watchdog_s
        self.sent = []

    def notify(self, *lines):
        self.sent.append(lines)
        return True


def test_a_hung_pump_stops_the_watchdog_pings(tmp_path):
    host, port, _, broker = find_broker()
    cfg = from_dict(agent_config(tmp_path, Keys(tmp_path), port, host=host, conc="c-hang%d" % os.getpid()))
    agent = Agent(cfg, link=Pipe().agent_end).start()
    # wide margins: the pump only has to come round once in 0.5 s, even on a loaded machine
    systemd, done = Recorder(watchdog_s=1.0), threading.Event()
    watcher = threading.Thread(target=supervise, args=(agent, systemd, done))
    watcher.start()
    try:
        time.sleep(3.0)
        alive = len(systemd.sent)
        assert alive >= 3  # about 6: every 0.5 s while the pump runs
        with agent._lock:  # the pump thread now blocks on its lock, as in a deadlock
            time.sleep(1.2)  # pings may still come for up to one period after its last round
            hung = len(systemd.sent)
            time.sleep(2.0)
            assert len(systemd.sent) == hung  # then none, for 4 periods
        time.sleep(3.0)
        assert len(systemd.sent) >= hung + 2  # the pump came round again: so do the pings
    finally:
        done.set()
        watcher.join()
        agent.stop()
        if broker is not None:
            broker.stop()
