"""The running datastore restored from its base and journal equals what the server held.

Random sequences of edit-configs (plain merges and edits with operations made in place, which
the journal records as the edit, and edits made by the Editor, default-operation replace,
candidate commits and copy-config, which it records whole), some of them invalid and refused,
with a compaction floor small enough that compactions happen along the way; then a restart
must serve exactly the same configuration.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from engine_harness import BASE, NS, Client, make_server, restart
from lxml import etree

from nvo3.netconf.server import merge
from nvo3.netconf.server.journal import Journal
from nvo3.netconf.server.persistence import EDIT, RunningStore


def _edit(rng: random.Random) -> tuple[str, str]:
    """(rpc, target) of one random edit on the engine-test module."""
    n = rng.randrange(1, 30)
    kind = rng.choice(["item", "item", "item", "group", "tag", "rule", "limits", "name",
                       "delete", "replace-top", "candidate", "operations", "operations"])
    nc = f'xmlns:nc="{BASE}"'
    if kind == "item":
        group = f"<group>g{rng.randrange(4)}</group>" if rng.random() < 0.3 else ""
        body = f"<item><id>{n}</id><value>v{rng.randrange(40)}</value>{group}</item>"
    elif kind == "group":
        body = f"<group><name>g{rng.randrange(4)}</name></group>"
    elif kind == "tag":
        body = f"<tag>t{rng.randrange(6)}</tag>"
    elif kind == "rule":
        body = f"<rule><seq>{rng.randrange(8)}</seq><action>a{n}</action></rule>"
    elif kind == "limits":
        body = f"<limits><min>{rng.randrange(12)}</min><max>{rng.randrange(12)}</max></limits>"
    elif kind == "name":
        body = f"<name>n{n}</name>"
    elif kind == "delete":
        what = rng.choice([f'<item nc:operation="remove"><id>{n}</id></item>',
                           f'<group nc:operation="remove"><name>g{rng.randrange(4)}</name></group>',
                           f'<tag nc:operation="remove">t{rng.randrange(6)}</tag>'])
        body = what
    elif kind == "operations":
        op = rng.choice(["replace", "delete", "remove", "create"])
        value = f"<value>v{rng.randrange(40)}</value>" if rng.random() < 0.5 else ""
        body = rng.choice([f'<item nc:operation="{op}"><id>{n}</id>{value}</item>',
                           f'<limits nc:operation="{op}"><max>{rng.randrange(12)}</max></limits>',
                           f'<item><id>{n}</id><value nc:operation="{op}">v{n}</value></item>'])
    elif kind == "replace-top":
        return (f'<edit-config><target><running/></target><default-operation>replace'
                f'</default-operation><config><top xmlns="{NS}"><item><id>{n}</id></item>'
                f"</top></config></edit-config>", "running")
    else:
        return (f'<edit-config><target><candidate/></target><config><top xmlns="{NS}" {nc}>'
                f"<item><id>{n}</id><value>c{n}</value></item></top></config></edit-config>",
                "candidate")
    return (f'<edit-config><target><running/></target><config><top xmlns="{NS}" {nc}>{body}'
            f"</top></config></edit-config>", "running")


def _running(client: Client) -> bytes:
    reply = client.rpc("<get-config><source><running/></source></get-config>")
    return etree.tostring(reply.find(f"{{{BASE}}}data"), method="c14n")


@pytest.mark.parametrize("seed", range(4))
def test_a_restart_serves_exactly_the_running_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    monkeypatch.setattr(RunningStore, "compaction_floor", 2048)
    monkeypatch.setattr(merge, "IN_PLACE_SHARE", 0)      # in place whenever it can be
    kinds: list[str] = []
    append = Journal.append

    def counted(self: Journal, kind: str, payload: bytes) -> None:
        kinds.append(kind)
        append(self, kind, payload)

    monkeypatch.setattr(Journal, "append", counted)
    rng = random.Random(seed)
    server = make_server(tmp_path)
    client = Client(server)
    for _ in range(300):
        rpc, target = _edit(rng)
        client.rpc(rpc)                                    # refused edits change nothing
        if target == "candidate" and rng.random() < 0.5:
            client.rpc("<commit/>")
        if rng.random() < 0.02:
            client.rpc("<copy-config><target><running/></target><source><candidate/>"
                       "</source></copy-config>")
    before = _running(client)
    assert b"item" in before
    assert sorted(p.name for p in tmp_path.glob("running.*.xml")), "no compaction happened"
    assert kinds.count(EDIT) >= 10, kinds
    after = _running(Client(restart(server)))
    assert after == before
