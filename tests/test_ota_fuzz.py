"""Any input at all: the OTA decoders raise ProtocolError and the installer's checks InstallerError, nothing else."""

import importlib
import sys
from pathlib import Path

from hypothesis import given, settings, strategies as st

from firmware.common.ota import manifest, transfer
from protocol.errors import ProtocolError
from tools.flash import bundle, workorder
from tools.flash.workorder import InstallerError

sys.path.insert(0, str(Path(__file__).parent / "mpy"))
world = importlib.import_module("ota_world")
ENVELOPE, TABLE, IMAGE = world.bundle(world.image(2, extra=200), 2)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_are_an_ota_message_or_a_protocol_error(data):
    try:
        kind, _, part, _, _, chunk = transfer.parse(data)
    except ProtocolError:
        return
    assert kind in (transfer.FRAGMENT_MSG, transfer.NEED_MSG) and part <= transfer.IMAGE and len(chunk) <= 32


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=60))
def test_any_bytes_are_an_announcement_or_a_protocol_error(data):
    try:
        session, targets = transfer.parse_announce(data)
    except ProtocolError:
        return
    assert transfer.announce(session, targets) == data and len(targets) <= transfer.MAX_TARGETS


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300), st.integers(0, manifest.ENVELOPE_LEN - 1), st.integers(1, 255))
def test_any_envelope_is_the_vendors_or_a_protocol_error(data, at, flip):
    tampered = ENVELOPE[:at] + bytes([ENVELOPE[at] ^ flip]) + ENVELOPE[at + 1:]
    for candidate in (data, tampered):
        try:
            manifest.open_envelope(candidate, world.VENDOR_KEY)
        except ProtocolError:
            continue
        raise AssertionError("a changed envelope was accepted")
    try:
        bundle.read(data)
    except ProtocolError:
        pass


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.binary(max_size=70)), max_size=12))
def test_any_pages_leave_a_download_consistent(tmp_path_factory, pages):
    flash = str(tmp_path_factory.mktemp("f") / "flash")
    world.provision(flash, world.image(1), 1)
    from firmware.common.ota.updater import Updater

    u = Updater(flash, world.VENDOR_KEY, manifest.CLASS_D100FC)
    m = u.offer(ENVELOPE, world.BATTERY_MV)
    u.put_table(TABLE)
    for index, data in pages:
        try:
            u.put_page(index, data)
        except ProtocolError:
            pass
    assert u.missing_pages() == list(range(m.pages))  # no random page matches its hash


readings = st.one_of(st.text(max_size=12), st.from_regex(r"\A[0-9]{1,7}([.,][0-9]{1,3})?\Z"))


@settings(max_examples=150, deadline=None)
@given(device=st.text(max_size=6), resource=st.sampled_from(["electricity", "water", "gas", "heat", "x", ""]),
       serial=st.text(max_size=40), constant=st.one_of(st.text(max_size=6), st.integers(0, 10**5).map(str)),
       first=readings, second=readings, group=st.text(max_size=8))
def test_any_installer_input_is_an_order_or_an_installer_error(device, resource, serial, constant, first,
                                                                second, group):
    row = {"resource": resource, "serial_number": serial, "pulse_constant": constant, "group_id": group,
           "initial_reading": first, "initial_reading_again": second}
    try:
        order = workorder.order(device, [row])
    except InstallerError as e:
        assert str(e)
        return
    m = order.meters[0]
    assert m.reading == workorder.parse_reading(second, "again") and 0 <= m.initial_pulses() <= workorder.REGISTER_MAX
