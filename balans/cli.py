"""``balans <command>``: each command lives in the part it belongs to.

A command module offers ``configure(parser)`` to declare its arguments and
``run(args) -> int`` to do the work; this file only lists them.
"""

import argparse
import importlib
import sys

# name, module, one-line help
COMMANDS = [
    ("bench", "balans.bench", "run a benchmark and print its figures"),
]


def build_parser():
    parser = argparse.ArgumentParser(prog="balans", description="BALANS open metering system")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.configure(p)
        p.set_defaults(_run=module.run)
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
