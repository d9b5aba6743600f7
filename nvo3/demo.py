"""`nvo3 demo`: the README's main job — `nvo3 lab up`, `nvo3 lab demo`, `nvo3 lab down`.

The lab is the federated topology (nvo3/lab/topologies/federated.toml: the two-dc hosts, a
three-member etcd cluster and two nDirector replicas per data center forming one control
plane; `--topology` picks another) under its own namespace prefix and its own state file, so
a lab an operator has up is never touched. Whatever
happens (a failed use case, an error, Ctrl-C, SIGTERM) the lab is taken down at the end.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nvo3.lab.lab import down, up
from nvo3.lab.use_cases import run_lab_demo

PREFIX = "nvo3demo"


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt


DEMO_TOPOLOGY = Path(__file__).resolve().parent / "lab" / "topologies" / "federated.toml"


def run_demo(json_output: bool = False, topology: str | None = None) -> int:
    if logging.getLogger().level == logging.INFO:     # the CLI default: progress lines only
        logging.getLogger().setLevel(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="nvo3-demo-"))
    path = tmp / "lab.json"
    say = (lambda _: None) if json_output else (lambda text: print(f"  {text}", flush=True))
    previous = signal.signal(signal.SIGTERM, _interrupt)
    t0 = time.perf_counter()
    try:
        if not json_output:
            print(f"lab up: {Path(topology or DEMO_TOPOLOGY).name}: two data centers, four "
                  "hosts; their daemons, the etcd cluster and nDirectors", flush=True)
        up(topology or DEMO_TOPOLOGY, path, prefix=PREFIX, say=say)
        if not json_output:
            print(f"lab up in {time.perf_counter() - t0:.1f} s", flush=True)
        return run_lab_demo(path, json_output=json_output)
    except KeyboardInterrupt:
        print("\ninterrupted: taking the lab down", file=sys.stderr)
        return 130
    except Exception as exc:
        if json_output:
            print(json.dumps({"passed": False, "error": f"{type(exc).__name__}: {exc}"}))
        print(f"nvo3 demo: error: {exc}", file=sys.stderr)
        return 1
    finally:
        counts = down(path, prefix=PREFIX)
        shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous)
        if not json_output:
            print(f"lab down: {counts['daemons']} daemons stopped, {counts['namespaces']} "
                  "namespaces deleted")
