"""systemd's notify protocol: tell the service manager the agent is ready, alive, stopping.

The agent runs for years on a box nobody watches. Under ``Type=notify`` with
``WatchdogSec=`` (balans-agent.service), systemd restarts it when the pings
stop, so a hung serial read or a deadlock becomes a restart (the queue on disk
makes that lossless), not a concentrator that silently stopped sending. The
protocol (sd_notify(3)) is one datagram of ``KEY=VALUE`` lines to the unix
socket named in ``$NOTIFY_SOCKET``; without that variable (not under systemd)
every call does nothing.
"""

import os
import socket


class Notifier:
    def __init__(self, environ=None):
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET") or None
        if address and address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self.address = address
        usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
        ours = pid is None or pid == str(os.getpid())
        # how often systemd wants to hear "alive" at the least; None: no watchdog
        self.watchdog_s = int(usec) / 1e6 if usec and usec.isdigit() and int(usec) > 0 and ours else None

    def notify(self, *lines):
        """Send ``lines`` as one message; False when there is no service manager or it cannot be reached."""
        if self.address is None:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto("\n".join(lines).encode(), self.address)
            except OSError:
                return False  # systemd gone (shutdown): nothing to tell
        return True

    def ready(self, status):
        return self.notify("READY=1", "STATUS=" + status)

    def alive(self, status=None):
        return self.notify("WATCHDOG=1", *(["STATUS=" + status] if status else []))

    def stopping(self):
        return self.notify("STOPPING=1")
