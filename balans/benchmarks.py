"""``balans bench <name> [--json]``: every benchmark of the project, one convention.

A benchmark is a function ``(args) -> dict`` of its figures (numbers or short
strings) that a part offers in ``<part>/bench.py`` as ``BENCHMARKS = {name: function}``.
The table shows each figure; ``--json`` prints the dict as one JSON object, whose
keys the issues name. Latest figures: docs/benchmarks.md.
"""

import json
import platform
import sys

from balans.parts import offered


def all_benchmarks():
    found = {}
    for benchmarks in offered("bench", "BENCHMARKS"):
        found.update(benchmarks)
    return found


def configure(parser):
    parser.add_argument("name", choices=sorted(all_benchmarks()), help="which benchmark")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    parser.add_argument("--quick", action="store_true", help="a smaller workload, for smoke tests")
    parser.add_argument("--broker", metavar="HOST:PORT", help="MQTT broker for benchmarks that publish "
                        "(default: one started for the run)")
    # Workload knobs; each benchmark reads those that apply to it and ignores the rest.
    parser.add_argument("--meters", type=int, help="how many meters (benchmarks that size a district)")
    parser.add_argument("--days", type=int, help="how many days of data")
    parser.add_argument("--db", help="central's store: an SQLite path or a postgresql:// URL")
    parser.add_argument("--seed", type=int, help="seed of generated data")


def run(args):
    figures = all_benchmarks()[args.name](args)
    if args.json:
        print(json.dumps(figures))
    else:
        print("benchmark %s on %s, Python %s" % (args.name, platform.machine(), platform.python_version()))
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            if isinstance(value, float):
                value = "%.6g" % value
            print("  %-*s  %s" % (width, key, value))
    sys.stdout.flush()
    return 0
