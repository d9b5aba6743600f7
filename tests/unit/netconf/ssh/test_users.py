"""UserStore: scrypt passwords, authorized keys, atomic 0600 file, name validation."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from nvo3.netconf.ssh.users import UserError, UserStore


def ed25519_key() -> tuple[paramiko.PKey, str]:
    priv = ed25519.Ed25519PrivateKey.generate()
    pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()
    import io
    key = paramiko.Ed25519Key.from_private_key(io.StringIO(pem))
    return key, f"{key.get_name()} {key.get_base64()} test@example"


def test_password_hashed_and_checked(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("admin", "s3cret")
    assert store.check_password("admin", "s3cret")
    assert not store.check_password("admin", "wrong")
    assert not store.check_password("nobody", "s3cret")
    text = (tmp_path / "users.json").read_text()
    assert "s3cret" not in text
    rec = json.loads(text)["users"]["admin"]["password"]
    assert rec["scheme"] == "scrypt" and len(bytes.fromhex(rec["salt"])) == 16
    assert stat.S_IMODE((tmp_path / "users.json").stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users.json"]   # no temp file left


def test_same_password_different_salt(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    store.add("a", "pw")
    store.add("b", "pw")
    users = json.loads((tmp_path / "users.json").read_text())["users"]
    assert users["a"]["password"]["hash"] != users["b"]["password"]["hash"]


def test_public_keys(tmp_path: Path) -> None:
    key, line = ed25519_key()
    other, _ = ed25519_key()
    store = UserStore(tmp_path / "users.json")
    store.add("ops", public_keys=[line])
    assert store.check_public_key("ops", key)
    assert not store.check_public_key("ops", other)
    assert not store.check_public_key("nobody", key)
    assert not store.check_password("ops", "")          # key-only user has no password


def test_persisted_and_reloaded(tmp_path: Path) -> None:
    UserStore(tmp_path / "users.json").add("admin", "pw")
    again = UserStore(tmp_path / "users.json")
    assert again.names() == ["admin"] and again.check_password("admin", "pw")
    again.remove("admin")
    assert UserStore(tmp_path / "users.json").names() == []
    with pytest.raises(KeyError):
        again.remove("admin")


@pytest.mark.parametrize("name", ["", "Admin", "1x", "a b", "a/b", "x" * 33, "root;"])
def test_bad_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(UserError, match="invalid user name"):
        UserStore(tmp_path / "users.json").add(name, "pw")


def test_bad_inputs(tmp_path: Path) -> None:
    store = UserStore(tmp_path / "users.json")
    with pytest.raises(UserError, match="password or at least one public key"):
        store.add("admin")
    with pytest.raises(UserError, match="unusable public key"):
        store.add("admin", public_keys=["ssh-ed25519 not-base64!"])
    with pytest.raises(UserError, match="empty password"):
        store.add("admin", "")
    assert not (tmp_path / "users.json").exists()
