"""Secret leaves encrypted at rest: what a datastore writes to disk never holds them in clear.

A leaf is secret when its schema carries the `nacm:default-deny-all` extension (RFC 8341
section 3.4.5: peer passwords). `SecretBox` finds them in the compiled schema once and
encrypts their values in every configuration the engine persists (the running datastore's
journal records, its compacted bases, startup, a confirmed commit's rollback) with AES-256-GCM
under a key kept in its own file (0600, created on first use, beside the SSH host key, not
in the datastores folder): a copy of the datastores alone does not reveal them. In memory,
on the wire and for the roles, values stay clear.

An encrypted value is `$nvo3-aesgcm$` and the URL-safe base64 of nonce and ciphertext. A value
without that prefix is read as it is (a store written before secrets were encrypted) and
`found_clear` is set, so that the caller rewrites the store encrypted.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Callable
from pathlib import Path

import libyang
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from lxml import etree

from nvo3.common.files import write_atomically
from nvo3.netconf.proto.xml import PARSER
from nvo3.netconf.server.schema import Schema

log = logging.getLogger(__name__)

MARK = "$nvo3-aesgcm$"
NACM_MODULE = "ietf-netconf-acm"
SECRET_EXTENSION = "default-deny-all"
KEY_FILE = "secrets.key"

#: A data node's place: the (namespace, name) of each node from the top.
NodePath = tuple[tuple[str, str], ...]


class SecretError(Exception):
    """A stored secret cannot be read back (wrong or missing key, damaged value)."""


def secret_leaves(schema: Schema) -> frozenset[NodePath]:
    """The configuration leaves marked nacm:default-deny-all in the served modules."""
    found: set[NodePath] = set()

    def walk(parent: libyang.Module | libyang.SList | libyang.SContainer,
             path: NodePath) -> None:
        for child in parent.children():
            if isinstance(child, (libyang.SRpc, libyang.schema.SNotif)) or child.config_false():
                continue
            here = (*path, (schema.namespaces[child.module().name()], child.name()))
            if isinstance(child, libyang.SLeaf) and any(
                    e.name() == SECRET_EXTENSION and e.module().name() == NACM_MODULE
                    for e in child.extensions()):
                found.add(here)
            elif isinstance(child, (libyang.SList, libyang.SContainer)):
                walk(child, here)

    for name in schema.role_modules:
        walk(schema.context.get_module(name), ())
    return frozenset(found)


class SecretBox:
    """Encrypts and decrypts the secret leaves of serialized configurations."""

    def __init__(self, schema: Schema, key_path: Path):
        self.key_path = Path(key_path)
        self.leaves = secret_leaves(schema)
        self._tags = {f"{{{ns}}}{name}" for *_, (ns, name) in self.leaves}
        self._names = {name.encode() for *_, (_, name) in self.leaves}
        self._aead: AESGCM | None = None
        self.found_clear = False            # a clear secret was read: rewrite the store

    # -- the key --------------------------------------------------------------------------

    def _cipher(self, create: bool = True) -> AESGCM:
        if self._aead is None:
            if self.key_path.exists():
                key = base64.b64decode(self.key_path.read_bytes())
            elif not create:
                raise SecretError(f"stored secrets need the key {self.key_path}, which is "
                                  "missing")
            else:
                key = AESGCM.generate_key(bit_length=256)
                write_atomically(self.key_path, base64.b64encode(key) + b"\n", mode=0o600)
                log.info("generated the datastore secrets key %s", self.key_path)
            if len(key) != 32:
                raise SecretError(f"{self.key_path}: not a 256-bit key")
            self._aead = AESGCM(key)
        return self._aead

    # -- values ---------------------------------------------------------------------------

    def encrypt(self, value: str) -> str:
        """One secret value, encrypted."""
        nonce = os.urandom(12)
        sealed = self._cipher().encrypt(nonce, value.encode(), None)
        return MARK + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, stored: str) -> str:
        """One stored value in clear (a value stored before encryption is taken as it is)."""
        if not stored.startswith(MARK):
            self.found_clear = True
            return stored
        try:
            raw = base64.urlsafe_b64decode(stored[len(MARK):])
            return self._cipher(create=False).decrypt(raw[:12], raw[12:], None).decode()
        except (ValueError, InvalidTag) as exc:
            raise SecretError(f"a stored secret cannot be decrypted with {self.key_path} "
                              f"(wrong key or damaged value: {type(exc).__name__})") from None

    # -- serialized configurations --------------------------------------------------------

    def seal(self, xml: bytes) -> bytes:
        """Top-level configuration nodes (serialized) with their secret leaves encrypted."""
        return self._each_secret(xml, self.encrypt)

    def unseal(self, xml: bytes) -> bytes:
        """The inverse of `seal` (raises SecretError)."""
        return self._each_secret(xml, self.decrypt)

    def _each_secret(self, xml: bytes, change: Callable[[str], str]) -> bytes:
        if not self.leaves or not any(name in xml for name in self._names):
            return xml                       # the common case: nothing to look at
        root = etree.fromstring(b"<r>%s</r>" % xml, PARSER)
        touched = False
        for element in root.iter(*self._tags):
            path = tuple((etree.QName(e).namespace or "", etree.QName(e).localname)
                         for e in reversed([element, *element.iterancestors()]) if e is not root)
            if path in self.leaves and element.text:
                element.text = change(element.text)
                touched = True
        if not touched:
            return xml
        return b"".join(etree.tostring(child) for child in root)
