"""A module on the bench: the real MicroPython unix port behind a serial port, its flash a directory.

The tool talks to ``port`` (a pty, as a USB-serial adapter shows up) exactly
as to a board. Behind it runs ``micropython -i`` with a tiny boot ROM that does
what a board does at power-on: change into its flash (``flash_dir``), run
``boot.py`` and ``main.py`` if present, then offer the REPL, whose raw mode is
MicroPython's own. A pump thread joins the pty the tool sees to the one
MicroPython sees and, given ``baudrate``, paces bytes as a UART at that rate
would (10 bits a byte). ``service_jumper`` is the jumper that unlocks the
REPL (tools/flash/device/service.py).
"""

import os
import pty
import select
import subprocess
import termios
import threading
import time
import tty
from pathlib import Path

from balans.toolchain import tool

ROM = """\
import os, sys
os.chdir(%r)
sys.path[:] = ["", ".frozen", "lib"]  # a board's import path: its flash first
open(%r, "w").close()  # tells the emulator the board is up
for script in ("boot.py", "main.py"):
    try:
        os.stat(script)
    except OSError:
        continue
    try:
        exec(open(script).read(), {"__name__": "__main__"})
    except Exception as e:
        sys.print_exception(e)
"""
HEAPSIZE = "192k"  # a mid-sized MCU's MicroPython heap (RP2040, ESP32 without PSRAM)
BOOT_TIMEOUT_S = 10
BITS_PER_BYTE = 10  # 8N1: start bit, 8 data bits, stop bit


class Emulator:
    def __init__(self, flash_dir, service_jumper=True, baudrate=None):
        self.flash_dir = str(Path(flash_dir).resolve())
        os.makedirs(self.flash_dir, exist_ok=True)
        self.service_jumper = service_jumper
        self.baudrate = baudrate
        self.process = None
        self.port = None

    def power_on(self):
        """Start the board; returns the serial port to open."""
        rom = Path(self.flash_dir).parent / ("%s.rom.py" % Path(self.flash_dir).name)
        up = Path(str(rom) + ".up")
        if up.exists():
            up.unlink()
        rom.write_text(ROM % (self.flash_dir, str(up)))
        board_master, board_slave = pty.openpty()
        attrs = termios.tcgetattr(board_slave)
        attrs[3] &= ~termios.ECHO  # a UART does not echo; signals stay on, so Ctrl-C reaches MicroPython
        termios.tcsetattr(board_slave, termios.TCSANOW, attrs)
        self._tool_master, tool_slave = pty.openpty()
        tty.setraw(tool_slave)
        self.port = os.ttyname(tool_slave)
        self._tool_slave = tool_slave  # kept open so the port exists between the tool's opens
        env = dict(os.environ, MICROPYPATH=".frozen", BALANS_SERVICE_JUMPER="1" if self.service_jumper else "0")
        self.process = subprocess.Popen([tool("micropython"), "-X", "heapsize=" + HEAPSIZE, "-i", str(rom)],
                                        stdin=board_slave, stdout=board_slave, stderr=board_slave,
                                        close_fds=True, env=env, start_new_session=True)
        os.close(board_slave)
        self._board_master = board_master
        self._running = True
        self._pump = threading.Thread(target=self._run_pump, daemon=True)
        self._pump.start()
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while not up.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the emulated board did not start")
            time.sleep(0.01)
        return self.port

    def power_off(self):
        if self.process is None:
            return
        self._running = False
        self.process.kill()
        self.process.wait()
        self._pump.join()
        for fd in (self._board_master, self._tool_master, self._tool_slave):
            os.close(fd)
        self.process = None

    def __enter__(self):
        self.power_on()
        return self

    def __exit__(self, *exc):
        self.power_off()

    def _run_pump(self):
        ends = {self._board_master: self._tool_master, self._tool_master: self._board_master}
        while self._running:
            ready, _, _ = select.select(list(ends), [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:  # the board's side closed: it was switched off
                    return
                if self.baudrate:
                    time.sleep(len(data) * BITS_PER_BYTE / self.baudrate)
                os.write(ends[fd], data)
