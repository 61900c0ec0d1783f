"""`python -m tests.lab up|down`: bring the lab up for a person, or sweep leftovers away."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from sitewatch.config import ConfigError
from tests.lab import Lab, LabError, can_build, sweep_stale


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="build the lab, print it, keep it until Ctrl-C")
    up.add_argument("--inventory", type=Path, default=Path("config/inventory.yaml"))
    up.add_argument("--hub", default="10.99.0.1", help="the hub's address (default 10.99.0.1)")
    commands.add_parser("down", help="remove every lab whose process is gone")
    args = parser.parse_args()
    problem = can_build()
    if problem:
        print(f"lab: {problem}", file=sys.stderr)
        return 1
    if args.command == "down":
        swept = sweep_stale()
        print(f"lab: removed {', '.join(swept)}" if swept else "lab: nothing to remove")
        return 0
    sweep_stale()
    try:
        lab = Lab(args.inventory, hub_address=args.hub)
    except (ConfigError, LabError) as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        lab.up()
    except LabError as err:
        print(f"lab: {err}", file=sys.stderr)
        return 1
    try:
        print(lab.describe())
        print("\nThe lab is up. Ctrl-C tears it down.", flush=True)
        stop.wait()
    finally:
        lab.down()
        print("lab: torn down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
