"""``balans <command>``: each command lives in the part it belongs to (see balans/parts.py).

A command is (name, help, configure(parser), run(args) -> exit code).
"""

import argparse
import sys

from balans import benchmarks, demo
from balans.parts import offered

# balans' own commands; every other part lists its own in <part>/cli.py
COMMANDS = [
    ("demo", "run the end-to-end district demo on embedded defaults", demo.configure, demo.run),
    ("bench", "run a benchmark and print its figures", benchmarks.configure, benchmarks.run),
]


def build_parser():
    parser = argparse.ArgumentParser(prog="balans", description="BALANS open metering system")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for commands in offered("cli", "COMMANDS"):
        for name, help_text, configure, run in commands:
            p = sub.add_parser(name, help=help_text, description=help_text)
            configure(p)
            p.set_defaults(_run=run)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args._run(args) or 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (OSError, ValueError, RuntimeError) as e:
        # Operator-facing: one clear line, not a traceback.
        print("balans %s: %s" % (args.command, e), file=sys.stderr)
        return 1
