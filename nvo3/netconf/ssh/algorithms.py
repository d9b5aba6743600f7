"""The SSH algorithms a server offers: modern ones only.

Key exchange curve25519, ECDH over the NIST curves, and finite-field Diffie-Hellman with
SHA-2 (groups 14, 16, 18); AES in GCM or CTR mode (and chacha20-poly1305 when paramiko has
it); HMAC-SHA2 MACs. Never group1 or SHA-1 key exchange, 3DES or CBC ciphers, MD5 or SHA-1
MACs.
"""

from __future__ import annotations

import paramiko

KEX = ("curve25519-sha256", "curve25519-sha256@libssh.org", "ecdh-sha2-nistp256",
       "ecdh-sha2-nistp384", "ecdh-sha2-nistp521", "diffie-hellman-group18-sha512",
       "diffie-hellman-group16-sha512", "diffie-hellman-group14-sha256")
CIPHERS = ("chacha20-poly1305@openssh.com", "aes256-gcm@openssh.com", "aes128-gcm@openssh.com",
           "aes256-ctr", "aes192-ctr", "aes128-ctr")
MACS = ("hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256",
        "hmac-sha2-512")


def _supported(wanted: tuple[str, ...], available: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(name for name in wanted if name in available)


def restrict(transport: paramiko.Transport) -> None:
    """Offer only the modern algorithms this paramiko implements (before start_server)."""
    options = transport.get_security_options()
    options.kex = _supported(KEX, options.kex)
    options.ciphers = _supported(CIPHERS, options.ciphers)
    options.digests = _supported(MACS, options.digests)
