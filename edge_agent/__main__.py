"""``python -m edge_agent ACTION``: ``balans agent ACTION`` without loading the other parts."""

import argparse
import sys

from edge_agent.cli import configure_agent, run_agent

parser = argparse.ArgumentParser(prog="python -m edge_agent", description="BALANS edge agent")
configure_agent(parser)
sys.exit(run_agent(parser.parse_args()))
