"""The agent's end of the serial line to the concentrator (protocol/link.py).

``LinkSession`` turns the byte stream into readings and events, drops records
it already has (by the concentrator's boot and record index), and acknowledges
only what the durable queue has fsynced. Its credit is the flow control: zero
while the queue refuses appends, so the concentrator holds the data.

The stream is anything with ``read(n)`` (non-blocking, b"" when idle) and
``write(data)``: a pyserial port from ``open_port(url)`` (a device, a pty,
``socket://host:port`` or ``loop://``), or one end of an in-process ``Pipe``.
"""

import logging
import threading

import serial

from protocol import link
from protocol.batch import Record
from protocol.errors import ProtocolError
from protocol.ids import meter_id
from protocol.obis import RESOURCES, code

log = logging.getLogger("balans.agent.link")

READ_CHUNK = 4096
LINK_CREDIT = 4000  # records the concentrator may send beyond what is durable: bounds the agent's RAM


def open_port(url, baud):
    """A pyserial port (device path or URL) that never blocks on read."""
    return serial.serial_for_url(url, baudrate=baud, timeout=0)


class _PipeEnd:
    def __init__(self, inbox, outbox, lock):
        self._in = inbox
        self._out = outbox
        self._lock = lock

    def write(self, data):
        with self._lock:
            self._out.extend(data)
        return len(data)

    def read(self, n=READ_CHUNK):
        with self._lock:
            data = bytes(self._in[:n])
            del self._in[:n]
        return data

    def waiting(self):
        """How many bytes have arrived at this end and are not read yet."""
        with self._lock:
            return len(self._in)

    def read_all(self):
        """Everything received so far (the HAL's link_read)."""
        with self._lock:
            data = bytes(self._in)
            self._in.clear()
        return data


class Pipe:
    """An in-process serial line: ``agent_end`` for the Agent, ``concentrator_end`` for a HAL.

    A concentrator HAL's link_write is ``concentrator_end.write`` and its
    link_read is ``concentrator_end.read_all``.
    """

    def __init__(self):
        lock = threading.Lock()
        to_agent, to_conc = bytearray(), bytearray()
        self.agent_end = _PipeEnd(to_agent, to_conc, lock)
        self.concentrator_end = _PipeEnd(to_conc, to_agent, lock)


class LinkSession:
    def __init__(self, stream, cursor):
        self.stream = stream
        self.reader = link.Reader()
        self.boot, self.durable = cursor  # what the queue holds: concentrator boot, records below index
        self.expected = self.durable  # next record index we take (received, maybe not yet durable)
        self.records_in = 0
        self.duplicates = 0
        self.out_of_order = 0
        self.bad_records = 0
        self.unknown_frames = 0
        self.lost = 0  # records the concentrator released that our disk does not have

    def poll(self):
        """Read what arrived; return (record frames, other frames).

        A record frame is (readings, events, cursor): what one RECORDS frame added,
        and the link cursor that covers it. A batch must end on a frame boundary, so
        that the cursor it carries to disk never claims records it does not hold.
        """
        frames, others = [], []
        data = self.stream.read(READ_CHUNK)
        while data:
            for body in self.reader.feed(data):
                try:
                    ftype, fields, tail = link.unpack(body)
                except ProtocolError as e:
                    self.unknown_frames += 1
                    log.warning("refused link frame: %s", e)
                    continue
                if ftype == link.L_HELLO:
                    self._hello(*fields)
                elif ftype == link.L_RECORDS:
                    readings, events = [], []
                    self._records(fields, tail, readings, events)
                    if readings or events:
                        frames.append((readings, events, self.cursor()))
                else:
                    others.append((ftype, fields, tail))
            data = self.stream.read(READ_CHUNK)
        return frames, others

    def _hello(self, boot, base):
        if boot != self.boot:
            log.info("concentrator boot %d (was %d): its records start at %d", boot, self.boot, base)
            self.boot, self.durable, self.expected = boot, base, base
        elif self.durable < base:
            # we lost records the concentrator had released to us (a replaced disk): take what it has
            log.error("concentrator released records %d..%d that are not on our disk", self.durable, base - 1)
            self.lost += base - self.durable
            self.durable = self.expected = max(self.expected, base)

    def _records(self, fields, tail, readings, events):
        boot, first, n = fields
        if boot != self.boot:
            self.out_of_order += 1  # our ACK names our boot; the concentrator answers with HELLO
            return
        if first > self.expected:
            self.out_of_order += 1  # a frame was lost: go-back-N resends from our ack
            return
        skip = self.expected - first
        if skip >= n:
            self.duplicates += n
            return
        self.duplicates += skip
        for i, (kind, addr, channel, c, ts, value) in enumerate(link.records(tail)):
            if i < skip:
                continue
            try:
                if kind == link.K_READING:
                    readings.append(Record(meter_id(addr, channel), ts, code(RESOURCES[c >> 4], c & 0x0F), value))
                elif kind == link.K_EVENT:
                    who = "%04x" % addr if channel == 0xFF else meter_id(addr, channel)
                    events.append([who, ts, c, value])
                else:
                    raise ValueError("record kind %d" % kind)
            except (ValueError, IndexError) as e:
                self.bad_records += 1
                log.warning("refused link record from %04x: %s", addr, e)
        self.records_in += n - skip
        self.expected = first + n

    def made_durable(self, cursor, credit):
        """The queue has everything below cursor's index: tell the concentrator."""
        if cursor[0] == self.boot:
            self.durable = max(self.durable, cursor[1])
        self.ack(credit)

    def ack(self, credit):
        self.send(link.pack(link.L_ACK, self.boot, self.durable, credit))

    def cursor(self):
        """(boot, index) the next batch covers up to: everything received so far."""
        return (self.boot, self.expected)

    def send(self, body):
        self.stream.write(link.encode(body))
