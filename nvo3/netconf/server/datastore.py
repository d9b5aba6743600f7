"""Configuration datastores as immutable validated snapshots, and their atomic persistence.

A `Snapshot` is one validated configuration: the lxml <data> tree the edit code works on and
the libyang tree that validated it (used for with-defaults printing and for the roles' view).
An edit builds a new snapshot; a commit swaps the reference; a confirmed commit keeps the old
one for rollback. Nothing mutates a snapshot after it is built.
"""

from __future__ import annotations

import json
import weakref
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import libyang
from _libyang import ffi, lib
from lxml import etree

from nvo3.common.files import write_atomically
from nvo3.netconf.proto.xml import BASE_NS, PARSER, WD_ATTR_NS, WITH_DEFAULTS_NS, base
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.subtree_selection import Step, print_selection
from nvo3.netconf.server.validation import parse_config

#: RFC 6243 with-defaults modes -> libyang printer flags.
WITH_DEFAULTS_FLAGS = {
    "explicit": lib.LYD_PRINT_WD_EXPLICIT,
    "trim": lib.LYD_PRINT_WD_TRIM,
    "report-all": lib.LYD_PRINT_WD_ALL,
    "report-all-tagged": lib.LYD_PRINT_WD_ALL_TAG,
}


def _print(dnode: libyang.DNode, fmt: int, with_defaults: str, siblings: bool = True) -> bytes:
    flags = lib.LYD_PRINT_SHRINK | WITH_DEFAULTS_FLAGS[with_defaults]
    if siblings:
        flags |= lib.LYD_PRINT_WITHSIBLINGS
        dnode = dnode.first_sibling()
    buf = ffi.new("char **")
    if lib.lyd_print_mem(buf, dnode.cdata, fmt, flags) != lib.LY_SUCCESS:
        raise dnode.context.error("cannot print data")
    try:
        return b"" if buf[0] == ffi.NULL else ffi.string(buf[0])
    finally:
        lib.free(buf[0])


def _unprefixed(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 7951 member names "module:name" -> "name" (a json.loads object hook)."""
    return {k.partition(":")[2] or k: v for k, v in pairs}


def print_xml(dnode: libyang.DNode | None, with_defaults: str = "explicit",
              siblings: bool = True) -> bytes:
    """The XML of a data tree and its siblings (or, `siblings` false, of `dnode` and its
    subtree alone), compact, deterministic."""
    if dnode is None:
        return b""
    xml = _print(dnode, lib.LYD_XML, with_defaults, siblings)
    if with_defaults == "report-all-tagged":
        # libyang tags defaults with the ietf-netconf-with-defaults module's metadata; on the
        # wire RFC 6243 section 6 wants the attribute in urn:...:netconf:default:1.0.
        xml = xml.replace(b'xmlns:ncwd="%s"' % WITH_DEFAULTS_NS.encode(),
                          b'xmlns:wd="%s"' % WD_ATTR_NS.encode())
        xml = xml.replace(b' ncwd:default="true"', b' wd:default="true"')
    return xml


def data_element(children_xml: bytes) -> etree._Element:
    """A <data> element holding the given top-level nodes."""
    return etree.fromstring(b'<data xmlns="%s">%s</data>' % (BASE_NS.encode(), children_xml),
                            PARSER)


class Snapshot:
    """One validated configuration. Build it with `Snapshot.validated`.

    A snapshot never changes. An edit that can be checked incrementally (`merge.InPlaceMerger`)
    does change the libyang tree in place, but first hands it over to a new snapshot
    (`hand_over`): the old one is retired, keeping only what it had printed and converted
    already (its caches), so nobody ever sees a snapshot change under them.
    """

    def __init__(self, schema: Schema, dnode: libyang.DNode | None,
                 constraints_checked: bool = True):
        self.schema = schema
        self.dnode = dnode
        #: False for a candidate edited but not yet validated (constraints not checked)
        self.constraints_checked = constraints_checked
        self._printed: dict[str, bytes] = {}
        self._dict: dict[str, Any] | None = None
        self._retired = False
        self._size_estimate: int | None = None
        self._finalizer: weakref.finalize | None = None
        if dnode is not None:
            # libyang trees are C memory the binding never frees by itself. Not __del__: in a
            # garbage cycle the context's cffi finalizer may run first (ly_ctx_destroy), and
            # freeing the tree then is a use-after-free. The finalize callback holds the tree,
            # hence its context, so the context outlives it.
            self._finalizer = weakref.finalize(self, dnode.free)

    def hand_over(self, first: libyang.DNode, grown_by: int) -> Snapshot:
        """A new snapshot owning this one's tree (`first`: its first top-level node now), to be
        changed in place by an edit of `grown_by` bytes; this snapshot is retired (see the
        class notes)."""
        assert self._finalizer is not None and not self._retired
        size = self.size_hint()
        self._finalizer.detach()
        self._finalizer, self.dnode, self._retired = None, None, True
        successor = Snapshot(self.schema, first)
        successor._size_estimate = size + grown_by
        return successor

    def size_hint(self) -> int:
        """About how many bytes the configuration prints to: exact once printed, else estimated
        from the edits made in place since it last was."""
        printed = self._printed.get("explicit")
        if printed is not None:
            return len(printed)
        if self._size_estimate is None:
            self._size_estimate = len(self.xml())
        return self._size_estimate

    def take_back(self, successor: Snapshot, first: libyang.DNode) -> None:
        """Undo `hand_over`: the in-place change was taken back out of the tree (`first`)."""
        assert successor._finalizer is not None and self._retired
        successor._finalizer.detach()
        successor._finalizer, successor.dnode, successor._retired = None, None, True
        self.dnode, self._retired = first, False
        self._finalizer = weakref.finalize(self, first.free)

    def _live(self) -> libyang.DNode | None:
        if self._retired:
            raise RuntimeError("a retired configuration snapshot has no tree (its tree was "
                               "handed over to an in-place edit)")
        return self.dnode

    @classmethod
    def validated(cls, schema: Schema, data: etree._Element) -> Snapshot:
        """Validate a <data> tree (raises RpcError) and return it as a snapshot."""
        return cls(schema, parse_config(schema, data))

    @classmethod
    def parsed(cls, schema: Schema, data: etree._Element) -> Snapshot:
        """A <data> tree checked for schema, structure and types only (raises RpcError): the
        candidate between <commit>s (RFC 7950 section 8.3.3)."""
        return cls(schema, parse_config(schema, data, validate=False),
                   constraints_checked=False)

    def checked(self) -> Snapshot:
        """This snapshot when validated, else a fully validated copy (raises RpcError)."""
        return self if self.constraints_checked else Snapshot.validated(self.schema, self.tree())

    @classmethod
    def empty(cls, schema: Schema) -> Snapshot:
        """The empty configuration."""
        return cls(schema, None)

    def xml(self, with_defaults: str = "explicit") -> bytes:
        """The configuration as XML (top-level nodes only), cached per mode."""
        if with_defaults not in self._printed:
            self._printed[with_defaults] = print_xml(self._live(), with_defaults)
        return self._printed[with_defaults]

    def selected_xml(self, steps: list[Step], with_defaults: str = "explicit") -> bytes:
        """The <data> answer to a path-shaped subtree filter (`subtree_selection`), printing
        only the selected subtree."""
        return print_selection(self._live(), steps,
                               lambda node: print_xml(node, with_defaults, siblings=False))

    @cached_property
    def _tree(self) -> etree._Element:
        return data_element(self.xml())

    def tree(self) -> etree._Element:
        """A fresh mutable lxml <data> copy (for an edit)."""
        return etree.fromstring(etree.tostring(self._tree), PARSER)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as the nested dicts roles read: RFC 7951 JSON with defaults,
        module prefixes stripped (lists are Python lists; 64-bit integers and decimal64 are
        strings, as RFC 7951 says). Built once per snapshot, through libyang's C printer."""
        if self._dict is None:
            dnode = self._live()
            self._dict = {} if dnode is None else json.loads(
                _print(dnode, lib.LYD_JSON, "report-all") or b"{}",
                object_pairs_hook=_unprefixed)
        return self._dict

    def subtree_dict(self, path: str) -> dict[str, Any] | None:
        """The container or list entry at data `path` (libyang's syntax, module-prefixed) in
        `to_dict`'s shape (defaults included), without printing the whole tree; None when
        there is none."""
        dnode = self._live()
        node = None if dnode is None else dnode.find_path(path)
        if node is None:
            return None
        if isinstance(node, (libyang.DLeaf, libyang.DLeafList)):
            raise ValueError(f"{path}: not a container or list entry")
        buf = ffi.new("char **")
        if lib.lyd_print_mem(buf, node.cdata, lib.LYD_JSON,
                             lib.LYD_PRINT_SHRINK | WITH_DEFAULTS_FLAGS["report-all"]) \
                != lib.LY_SUCCESS:
            raise node.context.error("cannot print data")
        try:
            printed = b"{}" if buf[0] == ffi.NULL else ffi.string(buf[0])
        finally:
            lib.free(buf[0])
        [value] = json.loads(printed, object_pairs_hook=_unprefixed).values()
        return value[0] if isinstance(node, libyang.DList) else value    # one entry

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and self.xml() == other.xml()


class Sealer(Protocol):
    """Encrypts the secret leaves of serialized configuration, and back (`secrets.SecretBox`)."""

    def seal(self, xml: bytes) -> bytes: ...

    def unseal(self, xml: bytes) -> bytes: ...


def save_snapshot(path: Path, snapshot: Snapshot, secrets: Sealer | None = None) -> None:
    """Persist a configuration as a <config> document (its secrets encrypted by `secrets`)."""
    xml = snapshot.xml() if secrets is None else secrets.seal(snapshot.xml())
    write_atomically(path, b'<config xmlns="%s">%s</config>\n' % (BASE_NS.encode(), xml))


def load_snapshot(schema: Schema, path: Path, secrets: Sealer | None = None) -> Snapshot:
    """Read and validate a persisted configuration; a missing file is an empty one."""
    if not path.exists():
        return Snapshot.empty(schema)
    root = etree.fromstring(path.read_bytes(), PARSER)
    if secrets is not None:
        children = secrets.unseal(b"".join(etree.tostring(c) for c in root
                                           if isinstance(c.tag, str)))
        return Snapshot.validated(schema, data_element(children))
    data = etree.Element(base("data"))
    data.extend(list(root))
    return Snapshot.validated(schema, data)
