"""``balans simulate``: run a scenario of the simulated mesh with the real firmware and print its figures."""

import json

from simulator.scenarios import SCENARIOS


def configure(parser):
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="block", help="layout (default block)")
    parser.add_argument("--nodes", type=int, default=240, help="radio modules (default 240)")
    parser.add_argument("--days", type=float, default=1.0, help="simulated days (default 1)")
    parser.add_argument("--seed", type=int, default=1, help="random seed: the same seed, the same run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args):
    from simulator.network import simulate

    if args.nodes < 1 or args.days <= 0:
        raise ValueError("--nodes must be >= 1 and --days > 0")
    figures = simulate(args.scenario, args.nodes, args.days, args.seed)
    if args.json:
        print(json.dumps(figures))
        return 0
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print("  %-*s  %s" % (width, key, "%.6g" % value if isinstance(value, float) else value))
    return 0


COMMANDS = [("simulate", "simulate the radio mesh with the real firmware and print its figures", configure, run)]
