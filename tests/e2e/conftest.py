"""What the lab tests share: running `nvo3` against a lab's state file, and one lab per test
module, brought up by the real `nvo3 lab up` and always taken down.

A module using the ``lab`` fixture names its own namespace prefix in ``PREFIX`` (so two lab
modules never share namespaces, even run side by side).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
TWO_DC = TOP / "nvo3/lab/topologies/two-dc.toml"


def nvo3(*args: str, state: Path, timeout: float = 120,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `nvo3 ARGS` with NVO3_LAB_STATE pointing at ``state``; asserts success if check."""
    result = subprocess.run([sys.executable, "-m", "nvo3.cli", *args], capture_output=True,
                            text=True, timeout=timeout,
                            env={**os.environ, "NVO3_LAB_STATE": str(state)})
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The default two-DC lab under the module's PREFIX; yields its state file."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    prefix = request.module.PREFIX
    state = tmp_path_factory.mktemp(f"lab-{prefix}") / "lab.json"
    try:
        out = nvo3("lab", "up", str(TWO_DC), "--prefix", prefix, state=state, timeout=120)
        print(out.stdout)
        yield state
    finally:
        print(nvo3("lab", "down", "--prefix", prefix, state=state, check=False).stdout)
