"""What the browser tests share: a lab of their own (the real `nvo3 lab up`, which also
starts the dashboard), the lab's NETCONF users, and headless chromium driven by selenium.

Users: once the lab provisions NACM users (branch nacm: ``"users"`` in the lab state), they
are used as they are. Before that, the test adds ``operator``, ``alice-admin`` and
``bob-admin`` itself to the vCenters' and the nDirector's user stores (no NACM rules then:
every user sees everything, and `test_tenant_isolation` says so and skips).

Screenshots go to ``tests/browser/artifacts/PREFIX/`` (ignored by git; the path is printed).
With ``NVO3_UPDATE_SCREENSHOT=1`` the topology screenshot is also written to
``docs/dashboard.png`` (the README's picture).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nvo3.daemon import users_of

TOP = Path(__file__).resolve().parents[2]
TWO_DC = TOP / "nvo3/lab/topologies/two-dc.toml"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


@dataclass(frozen=True)
class Lab:
    state: Path
    url: str
    users: dict[str, str]            # name -> password
    nacm: bool                       # whether the lab provisions NACM users and rules
    raw: dict


def nvo3(*args: str, state: Path, timeout: float = 180,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "nvo3.cli", *args], capture_output=True,
                            text=True, timeout=timeout,
                            env={**os.environ, "NVO3_LAB_STATE": str(state)})
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def _users(raw: dict) -> tuple[dict[str, str], bool]:
    listed = raw.get("users")
    if listed:
        return {u["name"]: u["password"] for u in listed}, True
    users = {name: secrets.token_hex(12) for name in ("operator", "alice-admin", "bob-admin")}
    for d in raw["daemons"]:
        if d["role"] in ("vcenter", "ndirector"):
            store = users_of(Path(d["state_dir"]))
            for name, password in users.items():
                store.add(name, password=password)
    return users, False


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The default two-DC lab under the module's PREFIX, dashboard included."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    prefix = request.module.PREFIX
    state = tmp_path_factory.mktemp(f"lab-{prefix}") / "lab.json"
    try:
        out = nvo3("lab", "up", str(TWO_DC), "--prefix", prefix, state=state)
        print(out.stdout)
        raw = json.loads(state.read_text())
        assert f"dashboard: {raw['dashboard_url']}" in out.stdout     # lab up prints the URL
        users, nacm = _users(raw)
        yield Lab(state, raw["dashboard_url"].rstrip("/"), users, nacm, raw)
    finally:
        pid = json.loads(state.read_text()).get("dashboard_pid") if state.exists() else None
        print(nvo3("lab", "down", "--prefix", prefix, state=state, check=False).stdout)
        if pid:                                           # lab down stops the dashboard
            assert not Path(f"/proc/{pid}").exists(), f"the dashboard (pid {pid}) still runs"


@pytest.fixture(scope="module")
def artifacts(request: pytest.FixtureRequest) -> Path:
    path = ARTIFACTS / request.module.PREFIX
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {path}")
    return path


@pytest.fixture(scope="module")
def new_browser() -> Iterator[Callable[[], object]]:
    """A factory of headless chromium sessions, all closed at the end of the module."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are required (Debian packages; "
                    "scripts/run installs them)")
    drivers = []

    def make() -> object:
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                    "--disable-gpu", "--window-size=1400,1000", "--no-first-run",
                    "--disable-extensions", "--disable-background-networking"):
            opts.add_argument(arg)
        d = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
        d.set_page_load_timeout(30)
        drivers.append(d)
        return d

    yield make
    for d in drivers:
        d.quit()
