"""Edits made in place equal edits made in a copy, through the whole engine.

Two servers take the same random sequence of edit-configs (plain merges and edits with
operations, which the first makes in its live tree when the incremental check can decide,
candidate edits and commits, confirmed commits): the second never edits in place (plain merges
are merged into a copy, edits with operations made by `edit.Editor`). After every request both
give the same answer (ok, or the same error tags and paths) and hold the same running and
candidate configurations (compared with every default reported); the in-place path must really
be taken, for plain merges and for edits with operations.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from engine_harness import BASE, NS, Client, errors, make_server
from lxml import etree

from nvo3.netconf.server.merge import InPlaceMerge, InPlaceMerger

OPS = ["delete", "remove", "replace", "create", "merge"]


def _op(rng: random.Random) -> str:
    return f' nc:operation="{rng.choice(OPS)}"'


def _operations(rng: random.Random, n: int) -> tuple[str, str]:
    """An edit with operations: (default-operation, <top> content)."""
    value = f"<value>v{rng.randrange(6)}</value>" if rng.random() < 0.5 else ""
    group = f"<group>g{rng.randrange(3)}</group>" if rng.random() < 0.5 else ""
    parts = []
    for _ in range(rng.randrange(1, 4)):
        m = rng.randrange(1, 12)
        part = rng.choices([
            f"<item{_op(rng)}><id>{m}</id>{value}{group}</item>",
            f"<item><id>{m}</id><value{_op(rng)}>v{rng.randrange(6)}</value></item>",
            f"<item><id>{m}</id><group{_op(rng)}>g{rng.randrange(3)}</group></item>",
            f"<group{_op(rng)}><name>g{rng.randrange(3)}</name></group>",
            f"<tag{_op(rng)}>t{rng.randrange(4)}</tag>",
            f"<limits{_op(rng)}><max>{rng.randrange(12)}</max></limits>",
            f"<limits><max{_op(rng)}>{rng.randrange(12)}</max></limits>",
            f"<name{_op(rng)}>n{n}</name>",
            f"<rule{_op(rng)}><seq>{rng.randrange(5)}</seq><action>a{n}</action></rule>",
            f"<item><id>{m}</id></item>",
        ], [12, 4, 4, 5, 3, 2, 2, 2, 2, 1])[0]
        parts.append(part)
    default = rng.choices(["", "<default-operation>none</default-operation>",
                           "<default-operation>merge</default-operation>"], [8, 3, 1])[0]
    return default, "".join(parts)


def _request(rng: random.Random) -> str:
    n = rng.randrange(1, 12)
    nc = f'xmlns:nc="{BASE}"'
    target = "candidate" if rng.random() < 0.25 else "running"
    kind = rng.choices(["item", "group", "tag", "rule", "limits", "name", "remove", "commit",
                        "confirmed", "discard", "operations"],
                       [30, 6, 5, 6, 8, 4, 8, 4, 2, 2, 30])[0]
    if kind == "commit":
        return "<commit/>"
    if kind == "confirmed":
        return "<commit><confirmed/><confirm-timeout>600</confirm-timeout></commit>"
    if kind == "discard":
        return "<discard-changes/>"
    if kind == "item":
        extra = "".join(rng.sample([f"<value>v{rng.randrange(6)}</value>",
                                    f"<group>g{rng.randrange(3)}</group>"], rng.randrange(3)))
        body = f"<item><id>{n}</id>{extra}</item>"
    elif kind == "group":
        body = f"<group><name>g{rng.randrange(3)}</name></group>"
    elif kind == "tag":
        body = f"<tag>t{rng.randrange(4)}</tag>"
    elif kind == "rule":
        action = f"<action>a{n}</action>" if rng.random() < 0.8 else ""
        body = f"<rule><seq>{rng.randrange(5)}</seq>{action}</rule>"
    elif kind == "limits":
        leaves = [f"<min>{rng.randrange(12)}</min>", f"<max>{rng.randrange(12)}</max>"]
        body = "<limits>" + "".join(rng.sample(leaves, 1 + rng.randrange(2))) + "</limits>"
    elif kind == "name":
        body = f"<name>n{n}</name>"
    elif kind == "operations":
        default, body = _operations(rng, n)
        return (f"<edit-config><target><{target}/></target>{default}<config><top xmlns=\"{NS}\" "
                f"{nc}>{body}</top></config></edit-config>")
    else:
        body = rng.choice([f'<item nc:operation="remove"><id>{n}</id></item>',
                           f'<group nc:operation="remove"><name>g{rng.randrange(3)}</name></group>'])
    return (f"<edit-config><target><{target}/></target><config><top xmlns=\"{NS}\" {nc}>{body}"
            f"</top></config></edit-config>")


def _answer(reply: etree._Element) -> list[tuple[str, str]]:
    return [(e.get("error-tag", ""), e.get("error-path", "")) for e in errors(reply)]


def _config(client: Client, source: str) -> bytes:
    reply = client.rpc(f"<get-config><source><{source}/></source><with-defaults xmlns="
                       f'"urn:ietf:params:xml:ns:yang:ietf-netconf-with-defaults">report-all'
                       f"</with-defaults></get-config>")
    return etree.tostring(reply.find(f"{{{BASE}}}data"), method="c14n")


@pytest.mark.parametrize("seed", range(6))
def test_in_place_edits_answer_and_store_exactly_as_copied_edits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    in_place = make_server(tmp_path / "in-place")
    reference = make_server(tmp_path / "reference")
    taken = {"in place": 0, "accepted": 0, "operations in place": 0, "operations accepted": 0}
    real_merge, real_edit = InPlaceMerger.merge, InPlaceMerger.edit

    def merge(self: InPlaceMerger, datastore: str, base, xml: bytes):  # type: ignore[no-untyped-def]
        if self is reference.datastores.merger:
            return None
        result = real_merge(self, datastore, base, xml)
        taken["in place"] += isinstance(result, InPlaceMerge)
        return result

    def edit(self: InPlaceMerger, datastore: str, base, split):  # type: ignore[no-untyped-def]
        if self is reference.datastores.merger:
            return None
        result = real_edit(self, datastore, base, split)
        taken["operations in place"] += isinstance(result, InPlaceMerge)
        return result

    monkeypatch.setattr(InPlaceMerger, "merge", merge)
    monkeypatch.setattr(InPlaceMerger, "edit", edit)
    a, b = Client(in_place), Client(reference)
    # a datastore large enough that most edits are small against it (else they are validated
    # whole: `merge.IN_PLACE_SHARE`)
    ballast = (f'<edit-config><target><running/></target><config><extra xmlns="{NS}"><note>'
               f'{"x" * 2000}</note></extra></config></edit-config>')
    assert not errors(a.rpc(ballast)) and not errors(b.rpc(ballast))
    rng = random.Random(seed)
    for step in range(400):
        request = _request(rng)
        got, want = a.rpc(request), b.rpc(request)
        assert _answer(got) == _answer(want), (step, request, etree.tostring(want))
        accepted = not errors(got) and request.startswith("<edit-config")
        operations = "nc:operation" in request or "default-operation" in request
        taken["accepted"] += accepted and not operations
        taken["operations accepted"] += accepted and operations
        for source in ("running", "candidate"):
            assert _config(a, source) == _config(b, source), (step, request, source)
    print(taken)
    assert taken["in place"] >= taken["accepted"] // 3, taken
    assert taken["operations in place"] >= taken["operations accepted"] // 3, taken
