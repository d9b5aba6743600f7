"""Edits with operations split into deletions plus a merge, applied to a libyang tree.

The engine-level differential test (`test_engine_in_place.py`) compares whole answers; these
pin the cases it meets rarely: a replaced entry keeps its place, a deleted non-presence
container is there again as validation leaves it, every undo restores the tree exactly,
what the Editor must decide is left to it, and a journal record replays to the same tree.
"""

from __future__ import annotations

import libyang
import pytest
from engine_harness import BASE, NS, TEST_YANG
from lxml import etree

from nvo3 import YANG_DIR
from nvo3.netconf.server.incremental import release, undo
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.split_edit import NotInPlace, SplitEdit, apply, split

ITEMS = "".join(f"<item><id>{n}</id><value>v{n}</value></item>" for n in range(1, 6))
LIVE = (f'<top xmlns="{NS}"><name>x</name><group><name>g</name></group>{ITEMS}'
        "<tag>a</tag><tag>b</tag><limits><max>7</max></limits></top>")


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema([TEST_YANG, YANG_DIR], ["engine-test"])


def _live(schema: Schema) -> libyang.DNode:
    tree = schema.context.parse_data_mem(LIVE, "xml", strict=True, no_state=True)
    assert tree is not None
    return tree


def _split(schema: Schema, body: str, default: str = "merge") -> SplitEdit | None:
    config = etree.fromstring(f'<config xmlns="{BASE}"><top xmlns="{NS}" xmlns:nc="{BASE}">'
                              f"{body}</top></config>")
    return split(schema, config, default)


def _printed(tree: libyang.DNode) -> str:
    return tree.first_sibling().print_mem("xml", with_siblings=True,
                                          include_implicit_defaults=True) or ""


def _validated(tree: libyang.DNode) -> str:
    copy = tree.first_sibling().duplicate(with_siblings=True, recursive=True)
    copy.first_sibling().validate_all(no_state=True)
    try:
        return _printed(copy)
    finally:
        copy.first_sibling().free()


def test_a_replaced_entry_keeps_its_place_and_undo_restores_it(schema: Schema) -> None:
    tree = _live(schema)
    before = _printed(tree)
    edit = _split(schema, '<item nc:operation="replace"><id>2</id><group>g</group></item>'
                          '<item nc:operation="replace"><id>3</id></item>')
    assert edit is not None and [t.op for t in edit.targets] == ["replace", "replace"]
    applied = apply(schema, tree, edit)
    after = _printed(tree)
    assert after.index("<id>1</id>") < after.index("<id>2</id>") < after.index("<id>3</id>") \
        < after.index("<id>4</id>")
    assert "<value>v2</value>" not in after and "<group>g</group>\n  </item>" in after
    assert after == _validated(tree)
    undo(tree, applied.changes)
    assert _printed(tree) == before
    tree.first_sibling().free()


def test_a_deleted_container_is_there_again_as_validation_leaves_it(schema: Schema) -> None:
    tree = _live(schema)
    before = _printed(tree)
    edit = _split(schema, '<limits nc:operation="delete"/><tag nc:operation="remove">a</tag>'
                          '<item nc:operation="delete"><id>5</id></item>')
    assert edit is not None
    applied = apply(schema, tree, edit)
    assert _printed(tree) == _validated(tree)
    assert "<max>10</max>" in _printed(tree)          # the default again
    undo(tree, applied.changes)
    assert _printed(tree) == before
    applied = apply(schema, tree, edit)
    release(applied.changes)
    assert "<id>5</id>" not in _printed(tree)
    tree.first_sibling().free()


@pytest.mark.parametrize("body", [
    '<item nc:operation="delete"><id>9</id></item>',          # data-missing: the Editor's
    '<item nc:operation="create"><id>1</id></item>',          # data-exists: the Editor's
    '<item nc:operation="delete"><id>05</id></item>',         # libyang finds 5, the Editor not
    '<item><id>01</id><value nc:operation="delete"/></item>',
    '<name nc:operation="delete"/>',                         # a default comes back
])
def test_what_the_editor_must_decide_is_left_to_it(schema: Schema, body: str) -> None:
    tree = _live(schema)
    before = _printed(tree)
    edit = _split(schema, body)
    assert edit is not None
    with pytest.raises(NotInPlace):
        apply(schema, tree, edit)
    assert _printed(tree) == before
    tree.first_sibling().free()


@pytest.mark.parametrize("body,default", [
    ('<rule nc:operation="delete"><seq>1</seq></rule>', "merge"),    # ordered-by user
    ('<item nc:operation="replace"><id>1</id><value nc:operation="delete"/></item>', "merge"),
    ('<item><id>1</id><value>v</value></item><item nc:operation="remove"><id>1</id></item>',
     "merge"),                                                         # named twice
    ('<item><id>1</id><value>v</value></item>', "none"),             # a subtree under none
    ('<item nc:operation="remove"><id>1</id></item>', "replace"),
    ('<unknown nc:operation="remove"/>', "merge"),
])
def test_edits_the_split_does_not_take(schema: Schema, body: str, default: str) -> None:
    assert _split(schema, body, default) is None


def test_removing_what_is_absent_changes_nothing(schema: Schema) -> None:
    tree = _live(schema)
    edit = _split(schema, '<item nc:operation="remove"><id>9</id></item>')
    assert edit is not None
    applied = apply(schema, tree, edit)
    assert not applied.changes.deleted and not applied.changes.created
    tree.first_sibling().free()


def test_a_journal_record_replays_to_the_same_tree(schema: Schema) -> None:
    edit = _split(schema, '<item nc:operation="replace"><id>2</id><value>w</value></item>'
                          '<limits nc:operation="delete"/><tag nc:operation="remove">b</tag>'
                          '<group nc:operation="create"><name>h</name></group>')
    assert edit is not None
    tree = _live(schema)
    release(apply(schema, tree, edit).changes)
    replayed = schema.context.parse_data_mem(LIVE, "xml", strict=True, no_state=True,
                                             parse_only=True)
    assert replayed is not None
    release(apply(schema, replayed, SplitEdit.from_record(edit.to_record())).changes)
    assert _validated(replayed) == _printed(tree)
    tree.first_sibling().free()
    replayed.first_sibling().free()
