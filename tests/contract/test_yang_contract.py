"""The YANG contract: every module under yang/ lints clean, loads, has an up-to-date tree
diagram and valid examples; every invalid example is rejected for the documented reason.

Generic over yang/*.yang: a new module is covered as soon as its file lands.

  yang/<module>.yang                   the module (file name = module name)
  docs/yang/<module>.tree              `pyang -f tree -p yang yang/<module>.yang`
                                       (regenerate all with `bash scripts/yang-trees`)
  yang/examples/<module>/*.xml         valid instance data: a configuration document, or, when
                                       the name ends with -state.xml, a <get> reply's data
                                       (config false nodes allowed)
  yang/examples/rpc/<module>/*.xml     RPC input documents (also the netconf-console recipes)
  yang/examples/invalid/*.xml          documents that must be rejected; the first line is
                                       <!-- expect: SUBSTRING --> where SUBSTRING is part of
                                       libyang's error message

The tools are required: a missing pyang or yanglint fails the tests, it never skips them.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import libyang
import pytest

ROOT = Path(__file__).resolve().parents[2]
YANG_DIR = ROOT / "yang"
EXAMPLES_DIR = YANG_DIR / "examples"
INVALID_DIR = EXAMPLES_DIR / "invalid"
TREES_DIR = ROOT / "docs" / "yang"
REGENERATE = "bash scripts/yang-trees"

MODULE_FILES = sorted(YANG_DIR.glob("*.yang"))
MODULES = [path.stem for path in MODULE_FILES]
RPC_DIR = EXAMPLES_DIR / "rpc"
EXAMPLES = sorted(
    path
    for path in EXAMPLES_DIR.glob("*/*.xml")
    if path.parent.name not in ("invalid", "rpc")
)
RPC_EXAMPLES = sorted(RPC_DIR.glob("*/*.xml"))
INVALID = sorted(INVALID_DIR.glob("*.xml"))
EXPECT_RE = re.compile(r"\A<!-- expect: (.+?) -->\s*\n")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _example_id(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _is_state_doc(path: Path) -> bool:
    return path.name.endswith("-state.xml")


def _tool(name: str) -> str:
    """The tool from this interpreter's virtualenv, else from PATH; fail (never skip)."""
    candidate = Path(sys.executable).parent / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed (neither next to {sys.executable} nor on PATH); "
            "`bash scripts/run test` installs it",
            pytrace=False,
        )
    return found


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture(scope="session")
def pyang() -> str:
    return _tool("pyang")


@pytest.fixture(scope="session")
def yanglint() -> str:
    return _tool("yanglint")


@pytest.fixture(scope="session")
def ctx():
    """A libyang context with every module of yang/ loaded (implemented)."""
    context = libyang.Context(str(YANG_DIR))
    for module in MODULES:
        context.load_module(module)
    yield context
    context.destroy()


def _parse(ctx, path: Path, state: bool):
    return ctx.parse_data_mem(
        path.read_text(encoding="utf-8"),
        "xml",
        strict=True,
        no_state=not state,
        validate_present=True,
    )


def _yanglint_data(yanglint: str, path: Path, state: bool) -> subprocess.CompletedProcess:
    return _run(
        yanglint,
        "-p",
        "yang",
        "-t",
        "data" if state else "config",
        *(_rel(f) for f in MODULE_FILES),
        _rel(path),
    )


def _modules_with_data(ctx) -> list[str]:
    """Modules that define top-level data nodes (typedef/grouping-only modules do not)."""
    return [name for name in MODULES if any(True for _ in ctx.get_module(name).children())]


# --- the inventory itself -------------------------------------------------------------


def test_there_are_modules():
    assert MODULES, "no YANG module under yang/"


@pytest.mark.parametrize("path", MODULE_FILES, ids=[p.name for p in MODULE_FILES])
def test_file_name_is_module_name(path: Path):
    match = re.search(r"^\s*(?:sub)?module\s+([A-Za-z0-9_.-]+)", path.read_text(), re.M)
    assert match, f"{_rel(path)}: no module statement"
    assert match.group(1) == path.stem, (
        f"{_rel(path)} declares module {match.group(1)}; the file must be named "
        f"{match.group(1)}.yang"
    )


# --- (a) lint -----------------------------------------------------------------------


@pytest.mark.parametrize("path", MODULE_FILES, ids=[p.stem for p in MODULE_FILES])
def test_pyang_lint_is_silent(pyang: str, path: Path):
    result = _run(pyang, "--lint", "-p", "yang", _rel(path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, (
        f"`pyang --lint -p yang {_rel(path)}` (exit {result.returncode}):\n{output}"
    )


# --- (b) all modules load together ----------------------------------------------------


def test_yanglint_loads_all_modules(yanglint: str):
    files = [_rel(path) for path in MODULE_FILES]
    result = _run(yanglint, "-p", "yang", *files)
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, (
        f"`yanglint -p yang {' '.join(files)}` (exit {result.returncode}):\n{output}"
    )


def test_libyang_loads_all_modules(ctx):
    loaded = {module.name() for module in ctx}
    assert set(MODULES) <= loaded
    for name in MODULES:
        assert ctx.get_module(name).implemented(), f"{name} is not implemented"


# --- (c) tree diagrams ----------------------------------------------------------------


def _header(ctx, module: str) -> str:
    """What heads a tree document: the module's namespace and prefix, as libyang reads them."""
    m = ctx.get_module(module)
    return f"namespace: {libyang.util.c2str(m.cdata.ns)}\nprefix:    {m.prefix()}\n\n"


@pytest.mark.parametrize("module", MODULES)
def test_tree_diagram_is_current(pyang: str, ctx, module: str):
    tree = TREES_DIR / f"{module}.tree"
    result = _run(pyang, "-f", "tree", "-p", "yang", f"yang/{module}.yang")
    assert result.returncode == 0, f"pyang -f tree failed for {module}:\n{result.stderr}"
    assert tree.is_file(), (
        f"{_rel(tree)} is missing; regenerate the trees with `{REGENERATE}`"
    )
    assert tree.read_text(encoding="utf-8") == _header(ctx, module) + result.stdout, (
        f"{_rel(tree)} is stale (yang/{module}.yang changed); regenerate the trees with "
        f"`{REGENERATE}`"
    )


def test_yang_md_states_namespaces_and_prefixes(ctx):
    """docs/yang.md's table names each module with its namespace and prefix."""
    text = (ROOT / "docs" / "yang.md").read_text(encoding="utf-8")
    for module in MODULES:
        m = ctx.get_module(module)
        ns = libyang.util.c2str(m.cdata.ns)
        assert f"| {module} | `{ns}` | `{m.prefix()}` |" in text, (
            f"docs/yang.md does not state {module}'s namespace and prefix")


def test_no_tree_without_module():
    orphans = sorted(
        _rel(tree) for tree in TREES_DIR.glob("*.tree") if tree.stem not in MODULES
    )
    assert not orphans, f"tree diagrams of no module: {orphans}; run `{REGENERATE}`"


# --- (d) valid examples ---------------------------------------------------------------


def test_every_module_with_data_has_an_example(ctx):
    missing = [
        module
        for module in _modules_with_data(ctx)
        if not list((EXAMPLES_DIR / module).glob("*.xml"))
    ]
    assert not missing, (
        "modules without an example under yang/examples/<module>/: " + ", ".join(missing)
    )


def test_example_directories_name_modules():
    stray = sorted(
        d.name
        for d in EXAMPLES_DIR.iterdir()
        if d.is_dir() and d.name not in ("invalid", "rpc") and d.name not in MODULES
    )
    stray += sorted(f"rpc/{d.name}" for d in RPC_DIR.iterdir() if d.name not in MODULES)
    assert not stray, f"yang/examples/ directories that name no module: {stray}"


@pytest.mark.parametrize("path", EXAMPLES, ids=[_example_id(p) for p in EXAMPLES])
def test_example_valid_libyang(ctx, path: Path):
    try:
        tree = _parse(ctx, path, _is_state_doc(path))
    except libyang.LibyangError as err:
        pytest.fail(f"{_rel(path)} rejected by libyang: {err}", pytrace=False)
    assert tree is not None, f"{_rel(path)} holds no data"
    module = path.parent.name
    roots = [node.module().name() for node in tree.siblings(include_self=True)]
    tree.free()
    assert module in roots, (
        f"{_rel(path)} is an example of {module} but holds only data of {sorted(set(roots))}"
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=[_example_id(p) for p in EXAMPLES])
def test_example_valid_yanglint(yanglint: str, path: Path):
    result = _yanglint_data(yanglint, path, _is_state_doc(path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, (
        f"yanglint rejects {_rel(path)} (exit {result.returncode}):\n{output}"
    )


def test_state_examples_need_state_parsing(ctx):
    """A -state.xml example carries config false data: parsed as configuration, it fails."""
    state_examples = [path for path in EXAMPLES if _is_state_doc(path)]
    assert state_examples, "no *-state.xml example: the state of the modules is untested"
    for path in state_examples:
        with pytest.raises(libyang.LibyangError, match="state node"):
            _parse(ctx, path, state=False)


@pytest.mark.parametrize("path", RPC_EXAMPLES, ids=[_example_id(p) for p in RPC_EXAMPLES])
def test_rpc_example_valid(ctx, yanglint: str, path: Path):
    """Each RPC input example names an RPC of its module and validates (libyang, yanglint)."""
    try:
        node = ctx.parse_op_mem("xml", path.read_text(encoding="utf-8"),
                                libyang.DataType.RPC_YANG)
    except libyang.LibyangError as err:
        pytest.fail(f"{_rel(path)} rejected by libyang: {err}", pytrace=False)
    assert node.module().name() == path.parent.name and node.name() == path.stem, (
        f"{_rel(path)} holds {node.module().name()}:{node.name()}"
    )
    node.free()
    result = _run(yanglint, "-p", "yang", "-t", "rpc", *(_rel(f) for f in MODULE_FILES),
                  _rel(path))
    output = (result.stdout + result.stderr).strip()
    assert result.returncode == 0 and not output, f"yanglint rejects {_rel(path)}:\n{output}"


def test_every_rpc_has_an_example(ctx):
    missing = []
    for module in MODULES:
        for node in ctx.get_module(module).children():
            if isinstance(node, libyang.SRpc) and \
                    not (RPC_DIR / module / f"{node.name()}.xml").exists():
                missing.append(f"{module}:{node.name()}")
    assert not missing, f"RPCs without an input example under yang/examples/rpc/: {missing}"


# --- (e) invalid documents ------------------------------------------------------------


def _expectation(path: Path) -> str:
    match = EXPECT_RE.match(path.read_text(encoding="utf-8"))
    assert match, f"{_rel(path)}: the first line must be <!-- expect: SUBSTRING -->"
    return match.group(1)


def test_there_are_invalid_documents():
    assert INVALID, "no invalid document under yang/examples/invalid/"


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_rejected_by_libyang(ctx, path: Path):
    expected = _expectation(path)
    try:
        tree = _parse(ctx, path, _is_state_doc(path))
    except libyang.LibyangError as err:
        assert expected in str(err), (
            f"{_rel(path)} is rejected, but not for the expected reason "
            f"{expected!r}: {err}"
        )
    else:
        if tree is not None:
            tree.free()
        pytest.fail(f"libyang accepts {_rel(path)}", pytrace=False)


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_rejected_by_yanglint(yanglint: str, path: Path):
    expected = _expectation(path)
    result = _yanglint_data(yanglint, path, _is_state_doc(path))
    assert result.returncode != 0, f"yanglint accepts {_rel(path)}"
    assert expected in result.stderr, (
        f"yanglint rejects {_rel(path)}, but not for the expected reason "
        f"{expected!r}:\n{result.stderr}"
    )
