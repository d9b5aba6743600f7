"""The YANG schema a server serves: a libyang context plus a compact index of data nodes.

The index (`NodeInfo`) answers what edit-config and the filters need per XML element
(container, list with keys, leaf, leaf-list, ordered-by user, config) without a libyang
lookup per element. libyang errors are captured with their path and validation code so the
engine can turn them into proper <rpc-error>s (see `validation.py`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import libyang
from _libyang import lib
from lxml import etree

#: IETF modules the engine itself implements (monitoring, notifications, with-defaults, NACM).
ENGINE_MODULES = ("ietf-netconf", "ietf-netconf-with-defaults", "ietf-netconf-monitoring",
                  "ietf-netconf-notifications", "ietf-netconf-acm")

#: The ietf-netconf features the engine implements (no :url).
ENGINE_FEATURES = {"ietf-netconf": ("writable-running", "candidate", "confirmed-commit",
                                    "rollback-on-error", "validate", "startup", "xpath")}


@dataclass(frozen=True)
class LibyangIssue:
    """One libyang error: its message, data path, validation code and app tag."""

    message: str
    path: str | None
    vecode: int
    app_tag: str | None


class CapturedError(libyang.LibyangError):
    """A libyang failure with every error item libyang reported."""

    def __init__(self, summary: str, issues: list[LibyangIssue]):
        super().__init__(summary + "".join(f": {i.message}" for i in issues))
        self.issues = issues


class CapturingContext(libyang.Context):
    """A libyang context whose errors keep libyang's structured error items."""

    def error(self, msg: str, *args: object) -> libyang.LibyangError:
        """The error libyang raises, as a CapturedError holding every error item."""
        msg %= args
        issues: list[LibyangIssue] = []
        if self.cdata:
            err = lib.ly_err_first(self.cdata)
            while err:
                issues.append(LibyangIssue(
                    message=libyang.util.c2str(err.msg) or "",
                    path=libyang.util.c2str(err.path),
                    vecode=int(err.vecode),
                    app_tag=libyang.util.c2str(err.apptag)))
                err = err.next
            lib.ly_err_clean(self.cdata, libyang.util.ffi.NULL)
        return CapturedError(msg, issues)


@dataclass
class NodeInfo:
    """What the engine needs to know about one YANG data node."""

    name: str
    namespace: str
    module: str
    kind: str                      # container | list | leaf | leaf-list | anydata
    keys: tuple[str, ...] = ()
    user_ordered: bool = False
    config: bool = True
    children: dict[tuple[str, str], NodeInfo] = field(default_factory=dict)

    def child(self, namespace: str | None, name: str) -> NodeInfo | None:
        """A child by namespace (None: the parent's) and local name."""
        return self.children.get((namespace or self.namespace, name))


def _kind(snode: libyang.SNode) -> str:
    if isinstance(snode, libyang.SList):
        return "list"
    if isinstance(snode, libyang.SLeafList):
        return "leaf-list"
    if isinstance(snode, libyang.SLeaf):
        return "leaf"
    if isinstance(snode, libyang.SContainer):
        return "container"
    return "anydata"


def _index(snode: libyang.SNode, namespaces: dict[str, str]) -> NodeInfo:
    module = snode.module().name()
    kind = _kind(snode)
    info = NodeInfo(name=snode.name(), namespace=namespaces[module], module=module, kind=kind,
                    config=not snode.config_false())
    if isinstance(snode, libyang.SList):
        info.keys = tuple(k.name() for k in snode.keys())  # noqa: SIM118 (libyang, not a dict)
        info.user_ordered = snode.ordered()
    elif isinstance(snode, libyang.SLeafList):
        info.user_ordered = snode.ordered()
    if isinstance(snode, (libyang.SList, libyang.SContainer)):
        for child in snode.children():
            if isinstance(child, (libyang.SRpc, libyang.schema.SNotif)):
                continue
            sub = _index(child, namespaces)
            info.children[(sub.namespace, sub.name)] = sub
    return info


def _enable_features(module: libyang.Module, names: Iterable[str]) -> None:
    """Enable exactly these features of a module, in one step (some depend on others)."""
    keep = [libyang.util.ffi.new("char[]", n.encode()) for n in names]
    array = libyang.util.ffi.new("char *[]", [*keep, libyang.util.ffi.NULL])
    if lib.lys_set_implemented(module.cdata, array) != lib.LY_SUCCESS:
        raise module.context.error("cannot enable features %s of %s", names, module.name())


def pyang_module_dir() -> Path:
    """Where pyang installed the IETF modules (ietf-netconf-monitoring and friends).

    pyang ships them as data files under the prefix it was installed into (a virtualenv,
    ``--user``, or the system): ``<prefix>/share/yang/modules/ietf``. That prefix is found from
    pyang's own location, so it is right however nvo3 and pyang were installed.
    """
    import pyang

    site_packages = Path(pyang.__file__).resolve().parents[1]      # .../lib/python3.X/site-packages
    for prefix in (site_packages.parents[2], Path(sys.prefix), Path(sys.base_prefix)):
        where = prefix / "share" / "yang" / "modules" / "ietf"
        if (where / "ietf-netconf.yang").is_file():
            return where
    raise FileNotFoundError(f"the IETF YANG modules pyang ships were not found under "
                            f"{site_packages.parents[2]} or {sys.prefix}: reinstall pyang")


class Schema:
    """The modules a server implements, loaded once into one libyang context."""

    def __init__(self, search_dirs: Iterable[Path], modules: Iterable[str]):
        dirs = [str(d) for d in search_dirs] + [str(pyang_module_dir())]
        self.context = CapturingContext(":".join(dirs))
        self.role_modules = list(modules)
        for name in (*ENGINE_MODULES, *self.role_modules):
            mod = self.context.load_module(name)
            if name in ENGINE_FEATURES:
                _enable_features(mod, ENGINE_FEATURES[name])
            else:
                mod.feature_enable_all()
        self.namespaces: dict[str, str] = {}     # module name -> namespace
        self.modules_by_ns: dict[str, str] = {}  # namespace -> module name
        for mod in self.context:
            ns = libyang.util.c2str(mod.cdata.ns)
            self.namespaces[mod.name()] = ns
            self.modules_by_ns[ns] = mod.name()
        self.top: dict[tuple[str, str], NodeInfo] = {}
        self.top_by_name: dict[str, list[NodeInfo]] = {}
        for mod in self.context:
            if not mod.implemented():
                continue
            for snode in mod.children():
                if isinstance(snode, (libyang.SRpc, libyang.schema.SNotif)):
                    continue
                info = _index(snode, self.namespaces)
                self.top[(info.namespace, info.name)] = info
                self.top_by_name.setdefault(info.name, []).append(info)

    def top_node(self, namespace: str | None, name: str) -> NodeInfo | None:
        """A top-level data node; an unqualified name is resolved when it is unique."""
        if namespace:
            return self.top.get((namespace, name))
        candidates = self.top_by_name.get(name, [])
        return candidates[0] if len(candidates) == 1 else None

    def child_of(self, parent: NodeInfo | None, namespace: str | None,
                 name: str) -> NodeInfo | None:
        """The data node `name` under `parent`, or a top-level one when `parent` is None."""
        return self.top_node(namespace, name) if parent is None else parent.child(namespace, name)

    def node_for(self, element: etree._Element) -> NodeInfo | None:
        """The schema node of an element in a <data> tree (found through its ancestors)."""
        chain = []
        node = element
        while node is not None and node.getparent() is not None:
            chain.append(node)
            node = node.getparent()
        info: NodeInfo | None = None
        for el in reversed(chain):
            qn = etree.QName(el)
            info = self.child_of(info, qn.namespace, qn.localname)
            if info is None:
                return None
        return info

    def list_keys(self, element: etree._Element) -> tuple[str, ...] | None:
        """Key names of a list entry element, None for anything else (filters use this)."""
        info = self.node_for(element)
        return info.keys if info is not None and info.kind == "list" else None

    def module_text(self, name: str, revision: str | None = None) -> str | None:
        """The YANG text of a loaded module (for get-schema), or None."""
        for mod in self.context:
            if mod.name() != name:
                continue
            rev = next(iter(mod.revisions()), None)
            if revision and (rev is None or rev.date() != revision):
                continue
            path = mod.filepath()
            if path and Path(path).exists():
                return Path(path).read_text()
            text = mod.print_mem("yang")
            return text if isinstance(text, str) else text.decode()
        return None

    def implemented_modules(self) -> list[tuple[str, str | None, str, list[str]]]:
        """(name, revision, namespace, enabled features) of every implemented module."""
        out = []
        for mod in self.context:
            if not mod.implemented():
                continue
            rev = next(iter(mod.revisions()), None)
            feats = [f.name() for f in mod.features() if f.state()]
            out.append((mod.name(), rev.date() if rev else None, self.namespaces[mod.name()],
                        feats))
        return sorted(out)
