"""Secret leaves at rest: found from the schema, encrypted and decrypted, and a wrong key
refused (the daemon-level tests over SSH are in tests/integration/test_protocol_fixes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nvo3 import YANG_DIR
from nvo3.netconf.server.schema import Schema
from nvo3.netconf.server.secrets import MARK, SecretBox, SecretError, secret_leaves

ND = "urn:nvo3:yang:nvo3-ndirector"


@pytest.fixture(scope="module")
def schema() -> Schema:
    return Schema((YANG_DIR,), ["nvo3-ndirector"])


def _config(password: str) -> bytes:
    return (f'<ndirector xmlns="{ND}"><nves><nve><name>a</name><address>198.18.1.1</address>'
            f"<password>{password}</password><vtep-address>198.18.0.1</vtep-address></nve>"
            "</nves></ndirector>").encode()


def test_secret_leaves_come_from_the_schema_extension(schema: Schema) -> None:
    assert secret_leaves(schema) == {
        ((ND, "ndirector"), (ND, "nves"), (ND, "nve"), (ND, "password")),
        ((ND, "ndirector"), (ND, "peers"), (ND, "peer"), (ND, "password"))}


def test_seal_and_unseal(schema: Schema, tmp_path: Path) -> None:
    box = SecretBox(schema, tmp_path / "k")
    assert box.seal(b"<x/>") == b"<x/>" and not (tmp_path / "k").exists()   # nothing secret
    sealed = box.seal(_config("s3cret&lt;&amp;&gt;"))
    assert b"s3cret" not in sealed and MARK.encode() in sealed
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert SecretBox(schema, tmp_path / "k").unseal(sealed) == _config("s3cret&lt;&amp;&gt;")
    assert box.seal(_config("x")) != box.seal(_config("x"))       # a fresh nonce each time


def test_clear_values_are_read_and_reported(schema: Schema, tmp_path: Path) -> None:
    box = SecretBox(schema, tmp_path / "k")
    assert box.unseal(_config("legacy")) == _config("legacy")
    assert box.found_clear


def test_wrong_or_missing_key_is_refused(schema: Schema, tmp_path: Path) -> None:
    sealed = SecretBox(schema, tmp_path / "k1").seal(_config("pw"))
    with pytest.raises(SecretError, match="missing"):
        SecretBox(schema, tmp_path / "k2").unseal(sealed)
    assert not (tmp_path / "k2").exists()
    SecretBox(schema, tmp_path / "k2").seal(_config("other"))       # another key
    with pytest.raises(SecretError, match="wrong key"):
        SecretBox(schema, tmp_path / "k2").unseal(sealed)
