"""The installer's tool against the device emulator: the real MicroPython unix port behind a pty."""

import csv
import hashlib
import json

import pytest

from balans import cli as balans_cli
from central import csvio
from firmware.common.ota.slots import State
from tools.flash import bundle, cli, provision, workorder
from tools.flash.emulator import Emulator
from tools.flash.rawrepl import DeviceError, RawRepl
from tools.flash.workorder import InstallerError

GOOD = {"resource": "electricity", "serial_number": "0123456", "pulse_constant": "3200",
        "initial_reading": "12345.6", "initial_reading_again": "12345,6", "group_id": "house-7"}
WATER = dict(GOOD, resource="water", serial_number="W-9", pulse_constant="100", initial_reading="0.25",
             initial_reading_again="0.25", group_id="house-7-water")
GROUPS = "group_id,parent_id,level,resource,input_meter_id,loss_pct\nhouse-7,,house,electricity,,\n" \
         "house-7-water,,house,water,,\n"


def central_imports(tmp_path, meters_csv):
    """The meter ids central's CSV import takes from ``meters_csv``; fails on any line it refuses."""
    from central.model import Model

    groups = tmp_path / "groups.csv"
    groups.write_text(GROUPS)
    model = Model()
    assert csvio.import_model(model, groups, meters_csv) == []
    return sorted(model.meters)


@pytest.fixture(scope="module")
def vendor():
    return bundle.new_key()


@pytest.fixture(scope="module")
def firmware():
    return provision.Firmware.compiled()


def repl_on(emu):
    repl = RawRepl(emu.port, pace=False, timeout=5)
    repl.enter(timeout=5)
    return repl


def on_board(emu, code):
    repl = repl_on(emu)
    try:
        return repl.exec(code).decode()
    finally:
        repl.close()


# ---- what the installer types --------------------------------------------------------


def test_a_good_order_becomes_the_module_config():
    o = workorder.order("002A", [GOOD, WATER], key="00112233445566778899aabbccddeeff")
    assert o.config() == {"device_id": "002a", "addr": 42, "channels": [
        {"resource": "electricity", "pulse_const": 3200, "initial": 39505920, "serial": "0123456"},
        {"resource": "water", "pulse_const": 100, "initial": 25, "serial": "W-9"}]}
    assert [o.meter_id(m) for m in o.meters] == ["002a.0", "002a.1"]
    assert len(workorder.order("002b", [GOOD]).key) == 16  # a fresh key when none is given


@pytest.mark.parametrize("device, meters, key, says", [
    ("002a", [dict(GOOD, initial_reading_again="12354.6")], "", "the two readings differ"),
    ("2a", [GOOD], "", "4 hex digits"),
    ("ffff", [GOOD], "", "reserved"),
    ("0000", [GOOD], "", "reserved"),
    ("002a", [GOOD, WATER, GOOD, WATER], "", "1 to 3"),
    ("002a", [], "", "1 to 3"),
    ("002a", [dict(GOOD, resource="electric")], "", "electricity, heat, gas, water"),
    ("002a", [dict(GOOD, pulse_constant="3200.5")], "", "whole number of pulses"),
    ("002a", [dict(GOOD, pulse_constant="0")], "", "whole number of pulses"),
    ("002a", [dict(GOOD, initial_reading="-5", initial_reading_again="-5")], "", "not a meter reading"),
    ("002a", [dict(GOOD, initial_reading="12 345", initial_reading_again="12345")], "", "not a meter reading"),
    ("002a", [dict(GOOD, initial_reading="1e5", initial_reading_again="1e5")], "", "not a meter reading"),
    ("002a", [dict(GOOD, initial_reading="", initial_reading_again="")], "", "not a meter reading"),
    ("002a", [dict(GOOD, initial_reading="9999999", initial_reading_again="9999999")], "", "more than the module"),
    ("002a", [dict(GOOD, serial_number="")], "", "serial number"),
    ("002a", [dict(GOOD, group_id=" ")], "", "balance group"),
    ("002a", [GOOD], "00112233", "32 hex digits"),
])
def test_bad_input_is_refused_with_what_to_do(device, meters, key, says):
    with pytest.raises(InstallerError, match=says):
        workorder.order(device, meters, key)


def write_work_order(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=("device_id",) + tuple(GOOD))
        w.writeheader()
        for device_id, row in rows:
            w.writerow(dict(row, device_id=device_id))


def test_a_work_order_without_its_columns_or_with_a_meter_twice_is_refused(tmp_path):
    bad = tmp_path / "wo.csv"
    bad.write_text("device,serial\n002a,1\n")
    with pytest.raises(InstallerError, match="first line must be"):
        workorder.read_rows(bad)
    write_work_order(bad, [("002a", GOOD), ("002b", GOOD)])
    with pytest.raises(InstallerError, match="line 3: meter 0123456 .* already on line 2"):
        workorder.read_rows(bad)
    with pytest.raises(InstallerError, match="cannot open"):
        workorder.read_rows(tmp_path / "missing.csv")


# ---- on the emulated board --------------------------------------------------------------


def test_provisioning_verifies_locks_and_writes_a_record_central_imports(tmp_path, vendor, firmware):
    order = workorder.order("002a", [GOOD, WATER])
    pub = bundle.public_bytes(vendor)
    with Emulator(tmp_path / "flash") as emu:
        cli.provision_one(emu.port, 115200, order, firmware, pub, tmp_path / "record", pace=False)
    flash = tmp_path / "flash"
    assert json.loads((flash / "config.json").read_text()) == order.config()
    assert (flash / "keys" / "module.key").read_bytes() == order.key
    assert State.decode((flash / "ota" / "state").read_bytes()).seq == 0
    for name, data in firmware.files:
        assert hashlib.sha256((flash / "ota" / "slot0" / name).read_bytes()).digest() == hashlib.sha256(data).digest()

    with Emulator(flash, service_jumper=False) as emu:  # power on without the jumper: locked
        with pytest.raises(DeviceError, match="service jumper"):
            RawRepl(emu.port, pace=False).enter(timeout=3)
    with Emulator(flash, service_jumper=True) as emu:  # with it: the REPL, and the firmware imports there
        out = on_board(emu, "import sys\nsys.path.insert(0, 'ota/slot0')\nimport otaboot\n"
                            "from firmware.d100fc import module\nprint(otaboot.Slots('.').slot_intact(0))")
        assert out.strip() == "True"

    assert central_imports(tmp_path, tmp_path / "record" / "meters.csv") == ["002a.0", "002a.1"]
    keys = list(csv.DictReader(open(tmp_path / "record" / "keys.csv")))
    assert keys == [{"device_id": "002a", "key": order.key.hex()}]
    assert (tmp_path / "record" / "keys.csv").stat().st_mode & 0o077 == 0


def test_a_file_that_differs_on_the_board_fails_verification(tmp_path, vendor, firmware):
    order = workorder.order("002a", [GOOD])
    files = provision.device_files(order, firmware, bundle.public_bytes(vendor))
    with Emulator(tmp_path / "flash") as emu:
        repl = repl_on(emu)
        repl.exec(provision.HELPERS)
        provision._copy(repl, "config.json", b"{}")
        with pytest.raises(DeviceError, match="config.json on the board does not match"):
            provision._verify(repl, [p for p in files if p[0] == "config.json"])
        repl.close()


def test_a_power_cut_while_copying_is_reported_and_provisioning_again_works(tmp_path, vendor, firmware):
    order = workorder.order("002a", [GOOD])
    pub = bundle.public_bytes(vendor)
    emu = Emulator(tmp_path / "flash")
    emu.power_on()
    repl = repl_on(emu)
    repl.timeout = 2

    def cut_power(step, done, total):
        if step == "copy" and done == 5:
            emu.power_off()

    with pytest.raises((DeviceError, OSError)):
        provision.provision(repl, order, firmware, pub, cut_power)
    repl.close()
    assert not (tmp_path / "flash" / "boot.py").exists()  # not locked: the installer can try again
    with Emulator(tmp_path / "flash") as emu:
        cli.provision_one(emu.port, 115200, order, firmware, pub, tmp_path / "record", pace=False)
    assert (tmp_path / "flash" / "boot.py").exists()


def test_a_signed_release_is_installed_with_its_sequence_and_updates_over_the_air(tmp_path, vendor):
    pub = bundle.public_bytes(vendor)
    release = bundle.make(provision.build.image("d100fc"), 7, "d100fc", vendor)
    with pytest.raises(Exception, match="signature"):
        provision.Firmware.from_bundle(release.encode(), bundle.public_bytes(bundle.new_key()))
    firmware = provision.Firmware.from_bundle(release.encode(), pub)
    order = workorder.order("002a", [GOOD])
    update = bundle.make(provision.build.image("d100fc"), 8, "d100fc", vendor)
    with Emulator(tmp_path / "flash") as emu:
        cli.provision_one(emu.port, 115200, order, firmware, pub, tmp_path / "record", pace=False)
        repl = repl_on(emu)
        repl.exec(provision.HELPERS)
        provision._copy(repl, "update.bota", update.encode())
        # The module's own compiled OTA code takes the update, verifying the vendor's signature.
        out = repl.exec(
            "import sys\nsys.path.insert(0, 'ota/slot0')\n"
            "from firmware.common.ota.updater import Updater\nfrom firmware.common.ota import manifest as mf\n"
            "u = Updater('.', open('keys/vendor.pub', 'rb').read(), mf.CLASS_D100FC)\n"
            "f = open('update.bota', 'rb')\nm = u.offer(f.read(mf.ENVELOPE_LEN), 3600)\n"
            "u.put_table(f.read(m.pages * mf.PAGE_HASH_LEN))\n"
            "for i in range(m.pages):\n u.put_page(i, f.read(m.page_length(i)))\n"
            "u.install()\nimport otaboot\ns = otaboot.Slots('.')\nprint(s.boot(), s.confirm(), s.load().seq)")
        repl.close()
    assert out.decode().split() == ["./ota/slot1", "True", "8"]
    assert State.decode((tmp_path / "flash" / "ota" / "state").read_bytes()).active == 1


def test_batch_provisions_the_good_modules_and_names_the_bad_one(tmp_path, vendor, capsys):
    (tmp_path / "vendor.pub").write_bytes(bundle.public_bytes(vendor))
    wo = tmp_path / "wo.csv"
    write_work_order(wo, [("002a", GOOD), ("002b", dict(WATER, initial_reading_again="0.26")),
                          ("002c", dict(GOOD, serial_number="0999"))])
    with Emulator(tmp_path / "flash") as emu:
        code = balans_cli.main(["flash", "batch", "--port", emu.port, "--vendor-pub", str(tmp_path / "vendor.pub"),
                                   "--work-order", str(wo), "--out", str(tmp_path / "rec"), "--yes"])
    out, err = capsys.readouterr()
    assert code == 1
    assert "[2/3] module 002b: NOT provisioned: module 002b, meter 1: the two readings differ" in err
    assert "2 provisioned, 1 failed: 002b" in out
    assert "[3/3] module 002c: done" in out
    assert central_imports(tmp_path, tmp_path / "rec" / "meters.csv") == ["002a.0", "002c.0"]


def test_vendor_commands_make_keys_and_a_bundle_that_checks(tmp_path, capsys):
    name = str(tmp_path / "vendor")
    assert balans_cli.main(["ota", "keygen", name]) == 0
    assert balans_cli.main(["ota", "build", "--key", name + ".pem", "--seq", "5", "-o", str(tmp_path / "r.bota")]) == 0
    assert balans_cli.main(["ota", "show", str(tmp_path / "r.bota"), "--vendor-pub", name + ".pub"]) == 0
    out = capsys.readouterr().out
    assert "seq 5" in out and "signature and pages: good" in out
    other = str(tmp_path / "other")
    balans_cli.main(["ota", "keygen", other])
    assert balans_cli.main(["ota", "show", str(tmp_path / "r.bota"), "--vendor-pub", other + ".pub"]) == 1
    assert "not the vendor's" in capsys.readouterr().err
    assert oct((tmp_path / "vendor.pem").stat().st_mode & 0o777) == "0o600"


def test_one_module_from_the_command_line_and_its_mistakes(tmp_path, vendor, capsys):
    pub = tmp_path / "vendor.pub"
    pub.write_bytes(bundle.public_bytes(vendor))
    common = ["flash", "module", "--vendor-pub", str(pub), "--out", str(tmp_path / "rec"), "--device", "002a",
              "--group", "house-7", "--meter", "electricity:0123456:3200"]
    assert balans_cli.main(common + ["--port", "/dev/nonexistent-tty", "--reading", "5", "--reading", "6"]) == 1
    assert "the two readings differ" in capsys.readouterr().err
    assert balans_cli.main(common + ["--port", "/dev/nonexistent-tty", "--reading", "5", "--reading", "5"]) == 1
    assert "cannot open the serial port /dev/nonexistent-tty" in capsys.readouterr().err
    network = tmp_path / "site.net"
    network.write_text("4241 00112233445566778899aabbccdd\n")  # a key digit pair short
    assert balans_cli.main(common + ["--port", "/dev/nonexistent-tty", "--network", str(network)]) != 0
    assert "the net id (4 hex digits) and the network key (32 hex digits)" in capsys.readouterr().err
    network.write_text("4241 00112233445566778899aabbccddeeff\n")
    with Emulator(tmp_path / "flash") as emu:
        assert balans_cli.main(common + ["--port", emu.port, "--network", str(network),
                                         "--reading", "5", "--reading", "5,0"]) == 0
    assert "module 002a: done" in capsys.readouterr().out
    config = json.loads((tmp_path / "flash" / "config.json").read_text())
    assert config["channels"][0]["initial"] == 16000 and config["net_id"] == 0x4241
    assert (tmp_path / "flash" / "keys" / "network.key").read_bytes() == bytes.fromhex("00112233445566778899aabbccddeeff")
