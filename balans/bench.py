"""``balans bench <name> [--json]``: every benchmark of the project, one convention.

A benchmark is a function ``(args) -> dict`` of its figures (numbers or short
strings), registered below as "module:function". The table shows each figure;
``--json`` prints the dict as one JSON object. Latest figures: docs/benchmarks.md.
"""

import importlib
import json
import platform
import sys

BENCHMARKS = {}


def configure(parser):
    parser.add_argument("name", choices=sorted(BENCHMARKS) or None, help="which benchmark")
    parser.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    parser.add_argument("--quick", action="store_true", help="smaller workload (for smoke tests)")


def run(args):
    module_name, func_name = BENCHMARKS[args.name].split(":")
    figures = getattr(importlib.import_module(module_name), func_name)(args)
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
