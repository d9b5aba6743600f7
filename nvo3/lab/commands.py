"""`nvo3 lab up|status|down|demo [TOPOLOGY]`: the command-line side of nvo3.lab.lab."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from nvo3.lab.lab import LabError, daemon_summary, down, status, up
from nvo3.lab.state import state_path
from nvo3.lab.topology import TopologyError


def _say(text: str) -> None:
    print(f"  {text}", flush=True)


def run_lab(args: argparse.Namespace) -> int:
    if getattr(args, "log_level", "INFO") == "INFO":      # the default: progress lines only
        logging.getLogger().setLevel(logging.WARNING)
    path = state_path()
    try:
        if args.action == "up":
            t0 = time.perf_counter()
            print(f"lab up: {args.topology or 'nvo3/lab/topologies/two-dc.toml'}", flush=True)
            state = up(args.topology, path, prefix=args.prefix, say=_say)
            print(f"lab {state.prefix} is up in {time.perf_counter() - t0:.1f} s "
                  f"(state: {path}); `nvo3 lab status`, `nvo3 lab demo`, `nvo3 lab down`")
            return 0
        if args.action == "status":
            if args.json:
                print(json.dumps(daemon_summary(path), indent=2))
            else:
                print(status(path))
            return 0
        if args.action == "down":
            counts = down(path, prefix=args.prefix)
            print(f"lab down: {counts['daemons']} daemons stopped, {counts['processes']} "
                  f"processes in namespaces killed, {counts['namespaces']} namespaces deleted")
            return 0
        from nvo3.lab.use_cases import run_lab_demo
        return run_lab_demo(path, json_output=args.json)
    except (LabError, TopologyError, FileNotFoundError) as exc:
        print(f"nvo3: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted (everything `lab up` had built is removed)", file=sys.stderr)
        return 130
