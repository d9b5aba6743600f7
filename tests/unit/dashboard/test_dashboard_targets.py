"""Where the dashboard connects: the lab state or a JSON file; host keys are required."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvo3.dashboard.targets import TargetsError, from_file, from_lab
from nvo3.lab.state import Daemon, LabState

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"


def test_from_lab(tmp_path: Path) -> None:
    def d(name: str, role: str, ns: str | None = None, dc: str | None = None) -> Daemon:
        return Daemon(name, role, "127.0.0.1", 1000 + len(name), "admin", "pw", KEY, 1,
                      str(tmp_path), ns, dc)
    lab = LabState("p", "t", daemons=[d("nve-host1", "nve", "p-host1", "dc1"),
                                      d("vserver1", "vserver", "p-host1", "dc1"),
                                      d("vcenter-dc1", "vcenter", None, "dc1"),
                                      d("vcenter-root", "vcenter"), d("ndirector", "ndirector")])
    path = lab.save(tmp_path / "lab.json")
    t = from_lab(path)
    assert (t.vcenter.name, t.vcenter.host_key) == ("vcenter-root", KEY)
    assert [n.name for n in t.ndirectors] == ["ndirector"]
    assert [(h.name, h.data_center, h.nve, h.vserver) for h in t.hosts] == [
        ("host1", "dc1", "host1", "vserver1")]
    with pytest.raises(TargetsError, match="no lab is up"):
        from_lab(tmp_path / "none.json")


def test_from_file(tmp_path: Path) -> None:
    path = tmp_path / "dash.json"
    good = {"vcenter": {"name": "vc", "host": "127.0.0.1", "port": 8301, "host_key": KEY},
            "ndirectors": [{"name": "nd", "host": "127.0.0.1", "port": 8300, "host_key": KEY}],
            "hosts": [{"name": "h1", "data_center": "dc1", "vserver": "vs1"}]}
    path.write_text(json.dumps(good))
    t = from_file(path)
    assert (t.vcenter.port, t.ndirectors[0].name, t.hosts[0].nve) == (8301, "nd", "h1")
    for bad, message in (({**good, "ndirectors": []}, "at least one"),
                         ({**good, "vcenter": {"host": "h", "port": 1, "host_key": " "}},
                          "host keys are always verified"),
                         ({**good, "vcenter": {"host": "h", "port": 1}}, "host_key")):
        path.write_text(json.dumps(bad))
        with pytest.raises(TargetsError, match=message):
            from_file(path)
