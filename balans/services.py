"""Finding or starting the outside services BALANS talks to: an MQTT broker and PostgreSQL.

Order of preference, as promised in the README: one already running, then one
started here from its installed binary, then a clear message of what is missing.
"""

import os
import shutil
import socket
import subprocess
import tempfile
import time


def port_open(host, port, timeout=0.5):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mosquitto_binary():
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


class Mosquitto:
    """A Mosquitto broker of our own on a port of our own, started and stopped on demand.

    Fault tests use it to take the broker down and bring it back while the
    machine's shared broker stays untouched.
    """

    shared_subscriptions = True

    def __init__(self, port=None, persistence_dir=None):
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("Mosquitto is not installed (Debian/Ubuntu: apt-get install mosquitto)")
        self.binary = binary
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._dir = persistence_dir or tempfile.mkdtemp(prefix="balans-mosquitto-")
        self.proc = None

    def _config(self):
        path = os.path.join(self._dir, "mosquitto.conf")
        with open(path, "w") as f:
            f.write("listener %d %s\nallow_anonymous true\npersistence true\npersistence_location %s/\n"
                    "log_dest none\nmax_queued_messages 100000\n" % (self.port, self.host, self._dir))
        return path

    def start(self, timeout=10.0):
        self.proc = subprocess.Popen([self.binary, "-c", self._config()], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited with code %s on port %d" % (self.proc.returncode, self.port))
            if port_open(self.host, self.port, 0.2):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("mosquitto did not open port %d within %.0f s" % (self.port, timeout))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class EmbeddedBroker:
    """An amqtt broker on a thread of this process: the last resort when no Mosquitto exists.

    It lacks shared subscriptions ($share/...), so subscribers must use plain topic filters
    with it (``shared_subscriptions`` is False).
    """

    shared_subscriptions = False

    def __init__(self, port=None):
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._loop = None
        self._thread = None

    def start(self, timeout=10.0):
        import asyncio
        import threading

        from amqtt.broker import Broker

        ready = threading.Event()
        failure = []

        async def serve():
            broker = Broker({"listeners": {"default": {"type": "tcp", "bind": "%s:%d" % (self.host, self.port)}},
                             "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}})
            try:
                await broker.start()
            except Exception as e:  # reported to the caller of start()
                failure.append(e)
                ready.set()
                return
            self._stopped = asyncio.Event()
            ready.set()
            await self._stopped.wait()
            await broker.shutdown()

        def thread_main():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(serve())

        self._thread = threading.Thread(target=thread_main, name="embedded-mqtt-broker", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or failure:
            raise RuntimeError("embedded MQTT broker did not start: %s" % (failure or "timeout"))
        return self

    def stop(self):
        if self._thread and self._loop:
            self._loop.call_soon_threadsafe(self._stopped.set)
            self._thread.join(10)
        self._thread = None


def find_broker(host=None, port=None):
    """Return (host, port, how, handle): the named broker, the local one, or one started here.

    ``handle`` is the broker to stop when done (a Mosquitto or an EmbeddedBroker), or None
    for a broker we did not start.
    """
    if host:
        return host, port or 1883, "the broker you named", None
    if port_open("127.0.0.1", 1883):
        return "127.0.0.1", 1883, "the local broker on 127.0.0.1:1883", None
    if mosquitto_binary():
        m = Mosquitto().start()
        return m.host, m.port, "a Mosquitto started for this run on 127.0.0.1:%d" % m.port, m
    m = EmbeddedBroker().start()
    return m.host, m.port, ("an embedded MQTT broker (amqtt) on 127.0.0.1:%d: no broker was running "
                            "and Mosquitto is not installed" % m.port), m


def postgres_url():
    """A PostgreSQL URL to test against, or None: BALANS_TEST_PG, else the local server if it answers."""
    url = os.environ.get("BALANS_TEST_PG")
    if url:
        return url
    if port_open("127.0.0.1", 5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return None
