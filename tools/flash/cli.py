"""``balans flash ...`` for installers and ``balans ota ...`` for the vendor (docs/installer.md, docs/ota.md)."""

import sys
import time
from pathlib import Path

from firmware.common.ota import manifest
from tools.flash import build, bundle, provision, workorder
from tools.flash.rawrepl import DeviceError, RawRepl
from tools.flash.workorder import InstallerError

DEFAULT_RECORD_DIR = "provisioning"


# ---- balans flash -------------------------------------------------------------------


def configure_flash(parser):
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("build", help="compile the module firmware with mpy-cross and show what goes on a board")
    p.add_argument("--board", default="d100fc", choices=build.BOARDS)
    for name, text in (("module", "provision one module: meters on the command line, readings asked twice"),
                       ("batch", "provision every module of a work-order CSV, one after the other")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--port", required=True, help="serial port of the module, e.g. /dev/ttyUSB0")
        p.add_argument("--vendor-pub", required=True, help="the vendor's update key (32 bytes, from the release)")
        p.add_argument("--bundle", help="a signed release (.bota) to install; default: compile this checkout")
        p.add_argument("--out", default=DEFAULT_RECORD_DIR, help="provisioning record folder (meters.csv, keys.csv)")
        p.add_argument("--network", help="the site's mesh network file: its net id (4 hex digits) and its key "
                                         "(32 hex digits) on one line, from the concentrator's set-up")
        p.add_argument("--baud", type=int, default=115200)
        if name == "module":
            p.add_argument("--device", required=True, help="module id on its label, 4 hex digits")
            p.add_argument("--group", required=True, help="balance group of its meters (entrance, house)")
            p.add_argument("--meter", action="append", required=True, metavar="RESOURCE:SERIAL:PULSES_PER_UNIT",
                           help="one per meter, in input order (1 to 3), e.g. electricity:0123456:3200")
            p.add_argument("--reading", action="append", default=[],
                           help="each meter's reading, twice per meter in meter order; asked for if not given")
        else:
            p.add_argument("--work-order", required=True, help="CSV: " + ",".join(workorder.COLUMNS))
            p.add_argument("--yes", action="store_true", help="do not wait for Enter between modules")


def run_flash(args):
    if args.action == "build":
        files = build.compile_firmware(args.board)
        for name, data in files:
            print("%7d  %s" % (len(data), name))
        print("%7d  total in %d files, image %d bytes" % (sum(len(d) for _, d in files), len(files),
                                                           len(build.image(args.board))))
        return 0
    vendor_pub = _read_vendor_pub(args.vendor_pub)
    network = _read_network(args.network) if args.network else None
    if network is None:
        print("no --network: the modules will not join a mesh until they get one", file=sys.stderr)
    if args.action == "module":  # checked before anything slow: the installer is waiting
        meters = [_meter_from_arg(text, args.group) for text in args.meter]
        _fill_readings(meters, args.reading, "module %s" % args.device)
        the_order = workorder.order(args.device, meters)
        jobs = [(the_order.device_id, lambda: the_order)]
    else:
        jobs = _work_order_jobs(args.work_order)
    firmware = (provision.Firmware.from_bundle(Path(args.bundle).read_bytes(), vendor_pub) if args.bundle
                else provision.Firmware.compiled())
    failed = []
    for n, (device_id, make_order) in enumerate(jobs, 1):
        label = "[%d/%d] module %s" % (n, len(jobs), device_id)
        if args.action == "batch" and not args.yes:
            input("%s: connect it, set its service jumper, press Enter " % label)
        try:
            order = make_order()
            order.network = network
            seconds = provision_one(args.port, args.baud, order, firmware, vendor_pub, args.out, label)
            print("%s: done in %.1f s, locked; record in %s" % (label, seconds, args.out))
        except (InstallerError, DeviceError, OSError) as e:
            print("%s: NOT provisioned: %s" % (label, e), file=sys.stderr)
            failed.append(device_id)
    if len(jobs) > 1:
        print("%d provisioned, %d failed%s" % (len(jobs) - len(failed), len(failed),
                                                (": " + " ".join(failed)) if failed else ""))
    return 1 if failed else 0


def provision_one(port, baud, order, firmware, vendor_pub, out, label="", pace=True):
    """Provision ``order`` on the board at ``port``, then write its record; returns the seconds taken."""
    start = time.monotonic()
    repl = RawRepl(port, baudrate=baud, pace=pace)
    try:
        repl.enter()

        def progress(step, done, total):
            if label:
                print("\r%s: %-6s %d/%d " % (label, step, done + 1, total), end="", flush=True)

        provision.provision(repl, order, firmware, vendor_pub, progress)
        if label:
            print()
        repl.leave()
    finally:
        repl.close()
    provision.write_record(out, order)
    return time.monotonic() - start


def _read_network(path):
    """(net id, key) from a network file: "4241 00112233445566778899aabbccddeeff"."""
    try:
        words = Path(path).read_text().split()
    except (OSError, UnicodeDecodeError) as e:
        raise InstallerError("cannot read the network file %s: %s" % (path, e)) from None
    try:
        net_id, key = int(words[0], 16), bytes.fromhex(words[1])
    except (IndexError, ValueError):
        net_id, key = -1, b""
    if len(words) != 2 or not 0 <= net_id <= 0xFFFF or len(words[0]) != 4 or len(key) != 16:
        raise InstallerError("%s must hold the net id (4 hex digits) and the network key (32 hex digits), "
                             "e.g. 4241 00112233445566778899aabbccddeeff" % path)
    return net_id, key


def _read_vendor_pub(path):
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise InstallerError("cannot read the vendor key %s: %s" % (path, e.strerror)) from None
    if len(data) != 32:
        try:
            data = bytes.fromhex(data.decode().strip())
        except ValueError:
            data = b""
    if len(data) != 32:
        raise InstallerError("%s is not a vendor update key (32 bytes, or 64 hex digits)" % path)
    return data


def _meter_from_arg(text, group):
    parts = text.split(":")
    if len(parts) != 3:
        raise InstallerError("--meter %r: write RESOURCE:SERIAL:PULSES_PER_UNIT, e.g. electricity:0123456:3200" % text)
    return {"resource": parts[0], "serial_number": parts[1], "pulse_constant": parts[2], "group_id": group}


def _fill_readings(meters, given, where):
    """Readings from ``given`` (two per meter) or, if none were given, asked for twice per meter."""
    if given and len(given) != 2 * len(meters):
        raise InstallerError("%s: give --reading twice for each of its %d meter(s), or none to be asked"
                             % (where, len(meters)))
    for i, m in enumerate(meters):
        if given:
            m["initial_reading"], m["initial_reading_again"] = given[2 * i], given[2 * i + 1]
        else:
            what = "%s, meter %d (%s %s)" % (where, i + 1, m["resource"], m["serial_number"])
            m["initial_reading"] = input("%s reading: " % what)
            m["initial_reading_again"] = input("%s reading again: " % what)


def _work_order_jobs(path):
    """(device id, make Order) per module of the work order; readings left empty are asked for."""
    rows = workorder.read_rows(path)
    jobs = []
    for device_id, meters in rows.items():
        def make(device_id=device_id, meters=meters):
            if not any((m.get("initial_reading") or "").strip() for m in meters):
                _fill_readings(meters, [], "module %s" % device_id)
            return workorder.order(device_id, meters, meters[0].get("key", ""))

        jobs.append((device_id, make))
    return jobs


# ---- balans ota ---------------------------------------------------------------------


def configure_ota(parser):
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = sub.add_parser("keygen", help="make a vendor update key pair: NAME.pem (keep it secret) and NAME.pub")
    p.add_argument("name")
    p = sub.add_parser("build", help="compile the firmware and sign it into an update bundle (.bota)")
    p.add_argument("--key", required=True, help="the vendor's private key (PEM)")
    p.add_argument("--seq", required=True, type=int, help="sequence number, above every earlier release")
    p.add_argument("--board", default="d100fc", choices=sorted(bundle.CLASSES))
    p.add_argument("--min-battery-mv", type=int, default=manifest.MIN_BATTERY_MV)
    p.add_argument("-o", "--output", required=True)
    p = sub.add_parser("show", help="print a bundle's manifest and check it")
    p.add_argument("bundle")
    p.add_argument("--vendor-pub", help="check the signature against this key")


def run_ota(args):
    if args.action == "keygen":
        key = bundle.new_key()
        Path(args.name + ".pem").write_bytes(bundle.key_to_pem(key))
        Path(args.name + ".pem").chmod(0o600)
        Path(args.name + ".pub").write_bytes(bundle.public_bytes(key))
        print("wrote %s.pem (secret) and %s.pub (goes into every module)" % (args.name, args.name))
        return 0
    if args.action == "build":
        key = bundle.key_from_pem(Path(args.key).read_bytes())
        if not 0 < args.seq < 2**32:
            raise ValueError("--seq must be 1 .. 4294967295")
        b = bundle.make(build.image(args.board), args.seq, args.board, key, min_battery_mv=args.min_battery_mv)
        Path(args.output).write_bytes(b.encode())
        print("wrote %s: seq %d, %d bytes in %d pages" % (args.output, args.seq, b.manifest.size, b.manifest.pages))
        return 0
    b = bundle.read(Path(args.bundle).read_bytes())
    m = b.manifest
    names = {v: k for k, v in bundle.CLASSES.items()}
    print("class %s, seq %d, %d bytes, %d pages of %d, min battery %d mV, image sha256 %s"
          % (names.get(m.class_id, m.class_id.hex()), m.seq, m.size, m.pages, m.page_size, m.min_battery_mv,
             m.image_sha256.hex()))
    if args.vendor_pub:
        b.verify(_read_vendor_pub(args.vendor_pub))
        print("signature and pages: good")
    return 0


COMMANDS = [
    ("flash", "installer: compile, flash, provision and lock modules over serial", configure_flash, run_flash),
    ("ota", "vendor: make update keys, build and check signed update bundles", configure_ota, run_ota),
]
