"""MicroPython's raw REPL over a serial line: run code on a board and read what it prints.

The protocol (docs.micropython.org, "MicroPython remote control: mpremote",
raw REPL): Ctrl-C twice stops a running program, Ctrl-A enters raw mode and
the board answers ``raw REPL; CTRL-B to exit`` and ``>``; code followed by
Ctrl-D runs it, and the board answers ``OK``, then the program's output, ``\\x04``,
the exception text if any, ``\\x04`` and ``>`` again. Ctrl-B leaves raw mode.
No soft reset on entry: that would run boot.py and main.py, and on a locked
board never come back.
"""

import time

import serial

CTRL_A, CTRL_B, CTRL_C, CTRL_D = b"\x01", b"\x02", b"\x03", b"\x04"
BANNER = b"raw REPL; CTRL-B to exit"
WRITE_CHUNK = 256  # bytes per write, with a pause: a board's UART receive buffer is small (mpremote does the same)
WRITE_PAUSE_S = 0.01
ENTER_TRY_S = 1.0  # wait this long for the raw REPL banner before interrupting again


class DeviceError(RuntimeError):
    """The board did not answer as a MicroPython raw REPL does, or the code raised there."""


class RawRepl:
    def __init__(self, port, baudrate=115200, timeout=10.0, pace=True):
        try:
            self.serial = serial.serial_for_url(port, baudrate=baudrate, timeout=0.1)
        except serial.SerialException as e:
            raise DeviceError("cannot open the serial port %s (%s): check the cable and the port name"
                              % (port, e)) from None
        self.timeout = timeout
        self.pace = pace  # a real UART needs WRITE_PAUSE_S between chunks; an emulator does not
        self._pending = bytearray()  # bytes read past the last ending looked for

    def close(self):
        self.serial.close()

    def read_until(self, ending, timeout=None):
        """Bytes up to and including ``ending``; DeviceError if it does not come in time."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        data = self._pending
        while ending not in data:
            chunk = self.serial.read(max(1, self.serial.in_waiting))
            if chunk:
                data += chunk
            elif time.monotonic() > deadline:
                raise DeviceError("the board stopped answering (waiting for %r)" % ending)
        end = data.index(ending) + len(ending)
        self._pending = data[end:]
        return bytes(data[:end])

    def enter(self, timeout=None):
        """Stop whatever runs and enter raw mode, trying again until ``timeout``: a board just
        powered on may still be starting, and a locked one never answers (DeviceError)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            self.serial.write(b"\r" + CTRL_C + CTRL_C)
            time.sleep(0.1)
            self.serial.reset_input_buffer()
            self._pending = bytearray()
            self.serial.write(CTRL_A)
            try:
                self.read_until(BANNER, timeout=ENTER_TRY_S)
                break
            except DeviceError:
                if time.monotonic() > deadline:
                    raise DeviceError("the board does not answer: check the cable and the power, and set the "
                                      "service jumper (a provisioned module is locked without it)") from None
        self.read_until(b">")

    def leave(self):
        self.serial.write(CTRL_B)

    def _write(self, data):
        for i in range(0, len(data), WRITE_CHUNK):
            self.serial.write(data[i:i + WRITE_CHUNK])
            if self.pace:
                time.sleep(WRITE_PAUSE_S)

    def exec(self, code):
        """Run ``code`` on the board; return what it printed. DeviceError carries the board's exception."""
        self._write(code.encode() if isinstance(code, str) else code)
        self.serial.write(CTRL_D)
        answer = self.read_until(b"OK")
        if answer != b"OK":
            raise DeviceError("the board did not take the code: %r" % answer[-40:])
        out = self.read_until(CTRL_D)[:-1]
        err = self.read_until(CTRL_D)[:-1]
        self.read_until(b">")
        if err:
            raise DeviceError("the board reported: %s" % err.decode(errors="replace").strip().splitlines()[-1])
        return out
