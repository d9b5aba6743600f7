"""FDB bulk benchmark: nvo3's pre-encoded netlink path against ``bridge -batch``.

Builds a throwaway namespace with one VXLAN device (198.18.x addresses), installs
the same ``n`` remote FDB entries with ``bridge -batch`` and then with
:func:`nvo3.dataplane.nlbulk.send_batch`, flushing in between, and removes the
namespace afterwards whatever happens.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time

from nvo3.dataplane import nlbulk

VNI = 4242
DEV = f"vx-{VNI}"


def _ip(ns: str, *args: str) -> None:
    subprocess.run(["ip", "-n", ns, *args], check=True, capture_output=True, timeout=30)


def bench_entries(n: int) -> list[tuple[str, str]]:
    """``n`` distinct (MAC, remote VTEP) pairs: VTEPs in 198.18.0.0/15, MACs 02:..."""
    out = []
    for i in range(n):
        mac = (f"02:{0x4e:02x}:{(i >> 24) & 255:02x}:{(i >> 16) & 255:02x}:"
               f"{(i >> 8) & 255:02x}:{i & 255:02x}")
        vtep = f"198.18.{1 + (i // 250) % 250}.{1 + i % 250}"
        out.append((mac, vtep))
    return out


def _count_fdb(ns: str) -> int:
    out = subprocess.run(["bridge", "-n", ns, "fdb", "show", "dev", DEV], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return sum(1 for line in out.splitlines() if " dst " in line)


def run_bench(n: int = 10000) -> dict[str, float]:
    """Time ``bridge -batch`` and nvo3's bulk path for ``n`` FDB entries."""
    ns = f"nvo3-bench-{os.getpid()}"
    entries = bench_entries(n)
    subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
    try:
        _ip(ns, "link", "add", DEV, "type", "vxlan", "id", str(VNI), "local", "198.18.0.1",
            "dstport", "4789", "nolearning")
        _ip(ns, "link", "set", DEV, "up")
        with tempfile.NamedTemporaryFile("w", suffix=".batch") as fh:
            fh.writelines(f"fdb add {m} dev {DEV} dst {v} self permanent\n" for m, v in entries)
            fh.flush()
            t0 = time.perf_counter()
            subprocess.run(["bridge", "-n", ns, "-batch", fh.name], check=True,
                           capture_output=True, timeout=300)
            bridge_s = time.perf_counter() - t0
        if _count_fdb(ns) != n:
            raise RuntimeError("bridge -batch did not install every entry")
        _ip(ns, "link", "del", DEV)  # flush: recreate the device empty
        _ip(ns, "link", "add", DEV, "type", "vxlan", "id", str(VNI), "local", "198.18.0.1",
            "dstport", "4789", "nolearning")
        _ip(ns, "link", "set", DEV, "up")
        with nlbulk.open_socket(ns) as sock:
            idx = int(subprocess.run(["ip", "-n", ns, "-o", "link", "show", DEV], check=True,
                                     capture_output=True, text=True).stdout.split(":")[0])
            t0 = time.perf_counter()
            msgs = [nlbulk.NeighMsg(nlbulk.OP_ADD, nlbulk.AF_BRIDGE, idx, nlbulk.NUD_PERMANENT,
                                    nlbulk.NTF_SELF, nlbulk.mac_bytes(m),
                                    socket.inet_aton(v)) for m, v in entries]
            failures = nlbulk.send_batch(sock, msgs)
            nvo3_s = time.perf_counter() - t0
        if failures:
            first = next(iter(failures.items()))
            raise RuntimeError(f"{len(failures)} entries failed, first: "
                               f"{entries[first[0]]}: {nlbulk.errno_text(first[1])}")
        if _count_fdb(ns) != n:
            raise RuntimeError("nvo3 bulk path did not install every entry")
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, timeout=30)
    return {"entries": n, "bridge_batch_s": round(bridge_s, 4), "nvo3_s": round(nvo3_s, 4),
            "ratio": round(nvo3_s / bridge_s, 2)}


if __name__ == "__main__":  # pragma: no cover
    print(run_bench())
