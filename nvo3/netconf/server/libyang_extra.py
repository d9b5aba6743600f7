"""libyang functions the Python binding does not declare, called through cffi's ABI mode.

libyang-python compiles its cffi module against a subset of libyang's API. The incremental
validator needs a few more functions of the same shared library (libyang.so.2, 2.1.x):
unlinking a subtree and inserting it back at its place (`lyd_unlink_tree`,
`lyd_insert_before`, `lyd_insert_after`), implicit nodes of one subtree
(`lyd_new_implicit_tree`; `lyd_new_implicit_all` is O(size of the datastore)), hashed sibling
look-ups (`lyd_find_sibling_first`, `lyd_find_sibling_val`), XPath evaluation with a
compiled expression's own prefixes (`lyd_eval_xpath3`, which is what libyang's validation
uses for must and leafref paths), the schema atoms of an expression (`lys_find_expr_atoms`)
and changing a term node's value (`lyd_change_term`, for undo).

They are declared here with opaque pointers (ABI mode: no compiler, the declarations must match
the C prototypes). Nodes and modules go in and out as the binding's cdata pointers, converted
through their addresses; `to_abi` and `from_abi` do that.
"""

from __future__ import annotations

from typing import Any

import cffi
from _libyang import ffi, lib

_abi = cffi.FFI()
_abi.cdef("""
struct lysc_prefix { char *prefix; void *mod; };
int lyd_new_implicit_tree(void *tree, uint32_t implicit_options, void **diff);
int lyd_find_sibling_first(void *siblings, void *target, void **match);
int lyd_find_sibling_val(void *siblings, void *schema, const char *key_or_value, size_t val_len,
                         void **match);
int lyd_eval_xpath3(void *ctx_node, void *cur_mod, const char *xpath, int format,
                    void *prefix_data, void *vars, uint8_t *result);
int lys_find_expr_atoms(void *ctx_node, void *cur_mod, void *expr, void *prefixes,
                        uint32_t options, void **set);
int lyd_change_term(void *term, const char *val_str);
void lyd_unlink_tree(void *node);
int lyd_insert_before(void *sibling, void *node);
int lyd_insert_after(void *sibling, void *node);
""")
_ly: Any = _abi.dlopen("libyang.so.2")

LY_SUCCESS = int(lib.LY_SUCCESS)
LY_ENOTFOUND = int(lib.LY_ENOTFOUND)
LY_EEXIST = int(lib.LY_EEXIST)
LY_ENOT = int(lib.LY_ENOT)
LY_VALUE_SCHEMA_RESOLVED = int(lib.LY_VALUE_SCHEMA_RESOLVED)
LYD_IMPLICIT_NO_STATE = 0x01
#: lys_find_expr_atoms option: the access restrictions of must and when evaluation
LYS_FIND_XP_SCHEMA = 0x08


def to_abi(cdata: Any) -> Any:
    """A binding cdata pointer as an ABI-mode `void *` (NULL stays NULL)."""
    return _abi.cast("void *", int(ffi.cast("uintptr_t", cdata)))


def from_abi(pointer: Any, ctype: str) -> Any:
    """An ABI-mode pointer as a binding cdata of `ctype` (e.g. "struct lyd_node *")."""
    return ffi.cast(ctype, int(_abi.cast("uintptr_t", pointer)))


def address(cdata: Any) -> int:
    """The address of a binding cdata pointer (a hashable identity for schema nodes)."""
    return int(ffi.cast("uintptr_t", cdata))


def new_implicit_tree(node: Any) -> None:
    """Add the implicit nodes (defaults, non-presence containers) of one data subtree."""
    rc = _ly.lyd_new_implicit_tree(to_abi(node), LYD_IMPLICIT_NO_STATE, _abi.NULL)
    if rc != LY_SUCCESS:
        raise RuntimeError(f"lyd_new_implicit_tree failed ({rc})")


def find_sibling_first(siblings: Any, target: Any) -> Any:
    """The node among `siblings` matching `target` (same schema, keys or value), or NULL."""
    match = _abi.new("void **")
    rc = _ly.lyd_find_sibling_first(to_abi(siblings), to_abi(target), match)
    if rc == LY_ENOTFOUND or match[0] == _abi.NULL:
        return ffi.NULL
    if rc != LY_SUCCESS:
        raise RuntimeError(f"lyd_find_sibling_first failed ({rc})")
    return from_abi(match[0], "struct lyd_node *")


def find_first_instance(siblings: Any, schema: Any) -> Any:
    """The first data instance of `schema` among `siblings` (hashed), or NULL."""
    if siblings == ffi.NULL:
        return ffi.NULL
    match = _abi.new("void **")
    rc = _ly.lyd_find_sibling_val(to_abi(siblings), to_abi(schema), _abi.NULL, 0, match)
    if rc == LY_ENOTFOUND or match[0] == _abi.NULL:
        return ffi.NULL
    if rc != LY_SUCCESS:
        raise RuntimeError(f"lyd_find_sibling_val failed ({rc})")
    return from_abi(match[0], "struct lyd_node *")


def eval_xpath(ctx_node: Any, cur_mod: Any, xpath: bytes, prefixes: Any) -> bool:
    """An XPath expression of the schema (compiled prefixes) evaluated at a node, as boolean."""
    result = _abi.new("uint8_t *")
    rc = _ly.lyd_eval_xpath3(to_abi(ctx_node), to_abi(cur_mod), xpath, LY_VALUE_SCHEMA_RESOLVED,
                             to_abi(prefixes), _abi.NULL, result)
    if rc != LY_SUCCESS:
        raise RuntimeError(f"lyd_eval_xpath3 failed ({rc}) for {xpath!r}")
    return bool(result[0])


def expr_atoms(ctx_snode: Any, cur_mod: Any, expr: Any, prefixes: Any) -> list[int] | None:
    """Addresses of the schema nodes libyang needs to evaluate `expr`, None if it cannot tell."""
    out = _abi.new("void **")
    rc = _ly.lys_find_expr_atoms(to_abi(ctx_snode), to_abi(cur_mod), to_abi(expr),
                                 to_abi(prefixes), LYS_FIND_XP_SCHEMA, out)
    if rc != LY_SUCCESS or out[0] == _abi.NULL:
        return None
    found = from_abi(out[0], "struct ly_set *")
    try:
        return [address(found.snodes[i]) for i in range(found.count)]
    finally:
        lib.ly_set_free(found, ffi.NULL)


def prefix_modules(prefixes: Any) -> dict[str, str]:
    """prefix -> module name of a compiled sized array of `struct lysc_prefix`."""
    if prefixes == ffi.NULL:
        return {}
    array = _abi.cast("struct lysc_prefix *", to_abi(prefixes))
    count = _abi.cast("uint64_t *", array)[-1]
    out = {}
    for i in range(count):
        item = array[i]
        if item.prefix != _abi.NULL and item.mod != _abi.NULL:
            module = from_abi(item.mod, "struct lys_module *")
            out[_abi.string(item.prefix).decode()] = ffi.string(module.name).decode()
    return out


def change_term(node: Any, value: str) -> None:
    """Set a term node's value (from its canonical string)."""
    rc = _ly.lyd_change_term(to_abi(node), value.encode())
    if rc not in (LY_SUCCESS, LY_EEXIST, LY_ENOT):   # EEXIST: only the default flag changed,
        # ENOT: the same value
        raise RuntimeError(f"lyd_change_term failed ({rc})")


def unlink_tree(node: Any) -> None:
    """Take a subtree out of its tree (it keeps its content; free it or insert it back)."""
    _ly.lyd_unlink_tree(to_abi(node))


def insert_next_to(anchor: Any, node: Any, after: bool) -> None:
    """Insert an unlinked list or leaf-list instance just before (or after) `anchor`, another
    instance of the same schema node.

    libyang places an instance exactly only in an ordered-by-user list (`lyd_insert_before`
    refuses others; `lyd_insert_child` appends to the instances). To put an instance of an
    ordered-by-system list back where it was (an exact undo), the schema node is flagged
    ordered-by-user for the duration of the call: the call holds no other state, and the
    caller holds the server lock, under which every use of the tree's context runs.
    """
    schema = node.schema
    user = int(lib.LYS_ORDBY_USER)
    flags = int(schema.flags)
    schema.flags = flags | user
    try:
        rc = (_ly.lyd_insert_after if after else _ly.lyd_insert_before)(to_abi(anchor),
                                                                       to_abi(node))
    finally:
        schema.flags = flags
    if rc != LY_SUCCESS:
        raise RuntimeError(f"lyd_insert_{'after' if after else 'before'} failed ({rc})")
