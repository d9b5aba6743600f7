"""The engine tells a role what an in-place edit touched (`ConfigChange.edited`) and lets it
read just those nodes (`ConfigChange.after_at`): the NVE agent, served by the real engine on
an in-memory kernel, applies such edits entry by entry and ends where deriving the whole
running configuration would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine_harness import BASE, Client, errors, make_server

from nvo3.common.names import NVE_NS
from nvo3.dataplane.fake import FakeKernel
from nvo3.dataplane.model import KINDS
from nvo3.netconf.server.role_api import ConfigChange
from nvo3.roles.nve import desired as nd
from nvo3.roles.nve.role import NveRole

MAC = "02:00:00:00:aa:01"


def _edit(body: str) -> str:
    return (f'<edit-config><target><running/></target><config><nve xmlns="{NVE_NS}" '
            f'xmlns:nc="{BASE}">{body}</nve></config></edit-config>')


def _att(state: str, port: str = "tap-vm", op: str = "") -> str:
    return (f"<attachments><attachment{op}><vni>300</vni><mac>{MAC}</mac><port>{port}</port>"
            f"<state>{state}</state></attachment></attachments>")


def test_in_place_entry_edits_reach_the_role_as_paths(tmp_path: Path) -> None:
    kernel = FakeKernel(ports=("tap-vm", "tap-other"))
    role = NveRole(kernel_factory=lambda _ns: kernel, monitor=False)
    seen: list[ConfigChange] = []
    apply = role.apply

    def recording(change: ConfigChange) -> None:
        seen.append(change)
        apply(change)
    role.apply = recording           # type: ignore[method-assign]  # a spy on the instance
    server = make_server(tmp_path, role)
    try:
        c = Client(server)
        remotes = "".join(f"<remote-mac><mac>02:00:00:01:{i >> 8:02x}:{i & 255:02x}</mac>"
                          f"<remote-vtep>198.18.0.2</remote-vtep></remote-mac>"
                          for i in range(60))      # the store is large against each edit
        steps = [
            ("<local-vtep-address>198.18.0.1</local-vtep-address><networks><network><vni>300"
             f"</vni><remote-macs>{remotes}</remote-macs></network></networks>"
             + _att("associated"), False),
            (_att("activated"), True),
            (_att("activated", "tap-other"), True),
            ("<networks><network><vni>300</vni><remote-macs><remote-mac><mac>02:00:00:02:00:01"
             "</mac><remote-vtep>198.18.0.3</remote-vtep></remote-mac></remote-macs></network>"
             "</networks>", True),
            (f"<networks><network><vni>300</vni><remote-macs><remote-mac><mac>{MAC}</mac>"
             "<remote-vtep>198.18.0.3</remote-vtep></remote-mac></remote-macs></network>"
             "</networks>", True),            # pending while attached here
            (_att("associated", op=' nc:operation="replace"'), True),
            (f'<attachments><attachment nc:operation="remove"><vni>300</vni><mac>{MAC}</mac>'
             "</attachment></attachments>", True),
            (_att("activated", "tap-missing"), True),     # refused: the port does not exist
        ]
        for body, entry_edit in steps:
            count = role.entry_commits
            reply = c.rpc(_edit(body))
            change = seen[-1]
            assert (change.edited is not None) == entry_edit, body
            if "tap-missing" in body:
                assert [e["error-tag"] for e in errors(reply)] == ["invalid-value"]
                assert "tap-missing does not exist" in errors(reply)[0]["error-message"]
                continue
            assert not errors(reply), errors(reply)
            assert role.entry_commits == count + entry_edit, body
            running = server.datastores.running.to_dict()
            want = nd.derive(running, {lk.name for lk in kernel.dump_links()})
            assert role.tracker.desired == {k: want.state.by_kind(k) for k in KINDS}
            assert role.derived.pending == want.pending
            assert _entries(role.config) == _entries(running)
            assert role.tracker.in_sync()
    finally:
        server.stop()


def _entries(config: dict[str, Any]) -> dict[str, list[str]]:
    """Every list entry of an nvo3-nve configuration, as text, in a canonical order."""
    nve = config["nve"]
    out: dict[str, list[str]] = {}
    for net in nve["networks"]["network"]:
        rms = (net.get("remote-macs") or {}).get("remote-mac") or []
        out[f"network {net['vni']}"] = sorted(repr(sorted(e.items())) for e in rms)
    for container, name in (("attachments", "attachment"), ("policies", "policy")):
        out[name] = sorted(repr(sorted(e.items())) for e in
                           ((nve.get(container) or {}).get(name) or []))
    return out
