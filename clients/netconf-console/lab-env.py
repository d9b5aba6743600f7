#!/usr/bin/env python3
"""Shell variables for recipes.sh, for one daemon of the running nvo3 lab (`nvo3 lab up`).

    eval "$(python3 clients/netconf-console/lab-env.py ndirector)"
    bash clients/netconf-console/recipes.sh hello

or let recipes.sh call it: NC_LAB=vcenter-root bash clients/netconf-console/recipes.sh ...

Reads the lab state file ($NVO3_LAB_STATE, default /run/nvo3/lab.json) and prints
NC_HOST, NC_PORT, NC_USER, NC_PASSWORD and NC_SSH_CONFIG for the daemon named (ndirector,
vcenter-root, vcenter-dc1, vserver3, nve-host1, ...; `nvo3 lab status` lists them). Host keys
are verified: a known_hosts made from every daemon's host key and an ssh_config naming it are
written into the lab's work directory (`<work_dir>/netconf-console/`, mode 0600, removed by
`nvo3 lab down`). Standard library only.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def main(argv: list[str]) -> int:
    name = argv[1] if len(argv) > 1 else "ndirector"
    path = Path(os.environ.get("NVO3_LAB_STATE", "/run/nvo3/lab.json"))
    if not path.exists():
        print(f"no lab is up ({path} does not exist): run `nvo3 lab up` "
              "(or set NVO3_LAB_STATE)", file=sys.stderr)
        return 2
    lab = json.loads(path.read_text())
    daemons = {d["name"]: d for d in lab["daemons"]}
    if name not in daemons:
        print(f"no daemon {name!r} in the lab (have: {', '.join(daemons)})", file=sys.stderr)
        return 2
    folder = Path(lab.get("work_dir") or path.parent) / "netconf-console"
    known_hosts = folder / "known_hosts"
    write_private(known_hosts, "".join(f"[{d['host']}]:{d['port']} {d['host_key']}\n"
                                       for d in daemons.values()))
    ssh_config = folder / "ssh_config"
    write_private(ssh_config, f"Host *\n    UserKnownHostsFile {known_hosts}\n")
    d = daemons[name]
    for var, value in (("NC_HOST", d["host"]), ("NC_PORT", d["port"]),
                       ("NC_USER", d["username"]), ("NC_PASSWORD", d["password"]),
                       ("NC_SSH_CONFIG", ssh_config)):
        print(f"export {var}={shlex.quote(str(value))}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
