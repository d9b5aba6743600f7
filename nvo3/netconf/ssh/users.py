"""Operator-managed NETCONF users: ``STATE_DIR/users.json``.

The file holds, per user, a scrypt password hash (random 16-byte salt, n=2**14, r=8, p=1) and
optional authorized public keys in OpenSSH one-line format (``ssh-ed25519 AAAA... comment``).
It is written atomically (temporary file in the same directory, fsync, rename, fsync of the
directory) with mode 0600. Password checks run scrypt even for unknown users and compare with
``hmac.compare_digest``, so timing does not reveal whether a user exists.

Format::

    {"version": 1, "users": {"admin": {"password": {"scheme": "scrypt", "n": 16384, "r": 8,
     "p": 1, "salt": "<hex>", "hash": "<hex>"}, "public_keys": ["ssh-ed25519 AAAA..."],
     "recovery": false, "groups": ["operators"]}}}

`recovery: true` makes a NACM recovery user (RFC 8341 section 3.4.2: never checked);
`groups` are the user's NACM groups from the transport (section 3.5.2), used in addition to
the groups configured in /nacm.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import paramiko

from nvo3.common.files import write_atomically
from nvo3.netconf.server.nacm import Identity

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
GROUP_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN = 2 ** 14, 8, 1, 32
_DUMMY_SALT = secrets.token_bytes(16)


class UserError(ValueError):
    """A user name, password or key an operator gave is not acceptable."""


def validate_name(name: str) -> str:
    """Return `name` if it is a valid user name, else raise UserError saying why."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise UserError(f"invalid user name {name!r}: use 1-32 characters, lower-case letters, "
                        "digits, '_', '.', '-', starting with a letter or '_'")
    return name


def validate_group(name: str) -> str:
    """Return `name` if it is a valid NACM group name, else raise UserError saying why."""
    if not isinstance(name, str) or not GROUP_RE.fullmatch(name):
        raise UserError(f"invalid group name {name!r}: use 1-64 letters, digits, '_', '.', '-'")
    return name


def parse_public_key(line: str) -> paramiko.PKey:
    """Parse one OpenSSH public-key line ``type base64 [comment]`` into a paramiko key."""
    fields = line.strip().split()
    if len(fields) < 2:
        raise UserError(f"public key {line[:40]!r} is not '<type> <base64> [comment]'")
    try:
        blob = base64.b64decode(fields[1], validate=True)
        key = paramiko.PKey.from_type_string(fields[0], blob)
    except Exception as exc:  # binascii.Error, SSHException, UnknownKeyType, ...
        raise UserError(f"unusable public key of type {fields[0]!r}: {exc}") from exc
    return key


def _scrypt(password: str, salt: bytes, n: int = SCRYPT_N, r: int = SCRYPT_R,
            p: int = SCRYPT_P) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=64 * 1024 * 1024, dklen=SCRYPT_LEN)


def hash_password(password: str) -> dict[str, Any]:
    """A fresh scrypt record for `password`."""
    if not password:
        raise UserError("empty password")
    salt = secrets.token_bytes(16)
    return {"scheme": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P,
            "salt": salt.hex(), "hash": _scrypt(password, salt).hex()}


class UserStore:
    """The users of one daemon, backed by a JSON file; safe to use from several threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._users: dict[str, dict[str, Any]] = {}
        self._mtime: int | None = None
        self._load()

    # persistence ------------------------------------------------------------------------------
    def _load(self) -> None:
        """(Re)read the file if it changed on disk (an operator may edit it while we run)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            self._users, self._mtime = {}, None
            return
        if mtime == self._mtime:
            return
        data = json.loads(self.path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
            raise UserError(f"{self.path}: expected an object with a 'users' object")
        self._users, self._mtime = data["users"], mtime

    def _save(self) -> None:
        text = json.dumps({"version": 1, "users": self._users}, indent=2, sort_keys=True)
        write_atomically(self.path, (text + "\n").encode("utf-8"))
        self._mtime = self.path.stat().st_mtime_ns

    # management ---------------------------------------------------------------------------------
    def add(self, name: str, password: str | None = None, public_keys: Iterable[str] = (),
            recovery: bool = False, groups: Iterable[str] = ()) -> None:
        """Create or replace user `name` with a password and/or authorized keys, its NACM
        groups and whether it is a recovery user."""
        validate_name(name)
        group_names = sorted({validate_group(g) for g in groups})
        keys = [" ".join(k.strip().split()[:3]) for k in public_keys if k.strip()]
        for k in keys:
            parse_public_key(k)
        if password is None and not keys:
            raise UserError(f"user {name!r} needs a password or at least one public key")
        record: dict[str, Any] = {"public_keys": keys, "recovery": bool(recovery),
                                  "groups": group_names}
        if password is not None:
            record["password"] = hash_password(password)
        with self._lock:
            self._load()
            self._users[name] = record
            self._save()
        log.info("user %s stored (password: %s, keys: %d, recovery: %s, groups: %s)", name,
                 password is not None, len(keys), bool(recovery), ",".join(group_names) or "-")

    def remove(self, name: str) -> None:
        """Delete user `name`; KeyError if there is no such user."""
        with self._lock:
            self._load()
            if name not in self._users:
                raise KeyError(f"no user {name!r}")
            del self._users[name]
            self._save()
        log.info("user %s removed", name)

    def names(self) -> list[str]:
        """The user names, sorted."""
        with self._lock:
            self._load()
            return sorted(self._users)

    def identity(self, name: str) -> Identity:
        """Who user `name` is for NACM: its groups and whether it is a recovery user."""
        record = self._record(name) or {}
        groups = record.get("groups") or []
        return Identity(name, tuple(str(g) for g in groups if isinstance(g, str)),
                        record.get("recovery") is True)

    # authentication ----------------------------------------------------------------------------
    def _record(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            self._load()
            return self._users.get(name)

    def check_password(self, name: str, password: str) -> bool:
        """True if `password` is user `name`'s; same cost whether or not the user exists."""
        rec = (self._record(name) or {}).get("password")
        if not rec or rec.get("scheme") != "scrypt":
            _scrypt(password, _DUMMY_SALT)   # equalize timing for unknown users
            return False
        got = _scrypt(password, bytes.fromhex(rec["salt"]), rec["n"], rec["r"], rec["p"])
        return hmac.compare_digest(got, bytes.fromhex(rec["hash"]))

    def check_public_key(self, name: str, key: paramiko.PKey) -> bool:
        """True if `key` is one of user `name`'s authorized keys."""
        offered = key.get_name(), key.asbytes()
        found = False
        for line in (self._record(name) or {}).get("public_keys", []):
            try:
                known = parse_public_key(line)
            except UserError:
                log.warning("user %s: skipping unusable stored key %.40s", name, line)
                continue
            if known.get_name() == offered[0] and hmac.compare_digest(known.asbytes(), offered[1]):
                found = True
        return found

