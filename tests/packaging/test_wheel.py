"""nvo3 as an operator installs it: a built wheel in a fresh virtualenv, used from any directory.

The wheel is built from this checkout (`pip wheel`, as a release would be), installed with
`pip install --no-deps` into a scratch virtualenv, and run by that virtualenv's own `nvo3`
console script with the working directory outside the checkout. Only nvo3's third-party
dependencies (libyang, ncclient, ...) are shared from the test environment, through a path
entry in the scratch venv: building libyang's binding again would cost a minute and prove
nothing about nvo3's packaging. The tests check that nvo3 itself is imported from the wheel.
"""

from __future__ import annotations

import json
import os
import select
import site
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from nvo3.netconf.client import connect

TOP = Path(__file__).resolve().parents[2]
PASSWORD = "wheel-test-S3cret"


@dataclass
class Installed:
    wheel: Path
    venv: Path
    workdir: Path          # a directory outside the checkout, the commands' cwd

    @property
    def nvo3(self) -> str:
        return str(self.venv / "bin" / "nvo3")

    def run(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.nvo3, *args], cwd=self.workdir, input=stdin, text=True,
                              capture_output=True, timeout=timeout,
                              env={**_clean_env(), **(env or {})})


def _clean_env() -> dict[str, str]:
    """The environment without anything that would make Python find the checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("wheel")
    dist = root / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                            str(dist), str(TOP)], capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = dist.glob("nvo3-*.whl")
    venv = root / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--no-index",
                          str(wheel)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    # the dependencies, from the test environment's site-packages (a plain path entry: its
    # .pth files, among them the editable install of this checkout, are not processed)
    scratch_site = next((venv / "lib").glob("python3*/site-packages"))
    (scratch_site / "nvo3-test-deps.pth").write_text(
        "\n".join(p for p in site.getsitepackages() if "site-packages" in p) + "\n")
    workdir = root / "elsewhere"
    workdir.mkdir()
    return Installed(wheel, venv, workdir)


def test_the_wheel_carries_the_yang_modules_and_the_default_topology(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = {p.name for p in (TOP / "yang").glob("*.yang")}
    assert {f"nvo3/yang/{m}" for m in modules} <= names
    assert "nvo3/lab/topologies/two-dc.toml" in names
    assert "nvo3/py.typed" in names
    assert not any(n.startswith(("tests/", "nvo3/yang/examples/")) for n in names)


def test_nvo3_runs_from_the_wheel_not_the_checkout(installed: Installed) -> None:
    python = installed.venv / "bin" / "python"
    out = subprocess.run([str(python), "-c", "import nvo3, nvo3.lab.topology as t; "
                          "print(nvo3.__file__); print(nvo3.YANG_DIR); print(t.DEFAULT_TOPOLOGY)"],
                         cwd=installed.workdir, capture_output=True, text=True, check=True,
                         env=_clean_env())
    package, yang_dir, topology = out.stdout.split()
    assert Path(package).is_relative_to(installed.venv), package
    assert sorted(p.name for p in Path(yang_dir).glob("*.yang")) == \
        sorted(p.name for p in (TOP / "yang").glob("*.yang"))
    assert Path(topology).is_file() and Path(topology).is_relative_to(installed.venv)
    version = installed.run("--version")
    assert version.returncode == 0 and version.stdout.startswith("nvo3 "), version


@pytest.fixture
def served_vcenter(installed: Installed, tmp_path: Path) -> Iterator[tuple[int, str]]:
    """`nvo3 serve vcenter` of the installed package; yields its port and host key."""
    state = tmp_path / "state"
    added = installed.run("user", "add", "admin", "--recovery", "--state-dir", str(state),
                          stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    proc = subprocess.Popen([installed.nvo3, "serve", "vcenter", "--listen", "127.0.0.1:0",
                             "--state-dir", str(state)], cwd=installed.workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**_clean_env(), "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stdout is not None
        deadline, line = time.monotonic() + 30, ""
        while time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                line = proc.stdout.readline()
                if line.startswith("nvo3 ready: "):
                    break
        if not line.startswith("nvo3 ready: "):
            proc.kill()
            pytest.fail(f"nvo3 serve vcenter did not become ready: {proc.communicate(timeout=10)[1]}")
        words = line.split()
        port = int(words[words.index("port") + 1])
        key_at = words.index("host-key")
        yield port, " ".join(words[key_at + 1:key_at + 3])
    finally:
        proc.terminate()
        proc.wait(15)


def test_an_installed_role_serves_its_modules(served_vcenter: tuple[int, str]) -> None:
    port, host_key = served_vcenter
    vc = "urn:nvo3:yang:nvo3-vcenter"
    with connect("127.0.0.1", port, "admin", PASSWORD, host_key=host_key) as nc:
        schema = nc.dispatch('<get-schema xmlns="urn:ietf:params:xml:ns:yang:'
                             'ietf-netconf-monitoring"><identifier>nvo3-vcenter</identifier>'
                             '</get-schema>')
        assert "module nvo3-vcenter" in "".join(schema.itertext())
        nc.edit_config(f'<config xmlns="urn:ietf:params:xml:ns:netconf:base:1.0">'
                       f'<vcenter xmlns="{vc}"><name>vc-wheel</name><data-center>dc1</data-center>'
                       f'</vcenter></config>', target="running")
        data = nc.get_config("running")
        assert data.findtext(f"{{{vc}}}vcenter/{{{vc}}}name") == "vc-wheel"


def test_the_installed_lab_comes_up_and_the_verbs_work(installed: Installed,
                                                       tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces)")
    prefix = f"nvw{os.getpid() % 10000}"
    env = {"NVO3_LAB_STATE": str(tmp_path / "lab.json")}
    try:
        up = installed.run("--log-level", "WARNING", "lab", "up", "--prefix", prefix, env=env)
        assert up.returncode == 0, up.stdout + up.stderr
        # the dashboard `lab up` started serves its templates and assets from the wheel
        url = json.loads((tmp_path / "lab.json").read_text())["dashboard_url"]
        assert url, up.stdout
        for page, expect in (("/login", b"<form"), ("/static/dashboard.css", b"{")):
            with urllib.request.urlopen(url.rstrip("/") + page, timeout=10) as answer:
                assert answer.status == 200 and expect in answer.read(), page
        created = installed.run("vm", "create", "wheel1", "-t", "alice", "--ip", "198.19.10.77",
                                env=env)
        assert created.returncode == 0, created.stdout + created.stderr
        listed = installed.run("vm", "list", env=env)
        assert listed.returncode == 0 and "wheel1" in listed.stdout, listed
    finally:
        down = installed.run("lab", "down", "--prefix", prefix, env=env)
        assert down.returncode == 0, down.stdout + down.stderr
