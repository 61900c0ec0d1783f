"""Hash and verify dashboard passwords with scrypt.

The stored form is `scrypt$N$r$p$salt$hash` (salt and hash in unpadded base64), so the cost can
be raised later without invalidating existing hashes: each hash carries its own parameters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
_KEY_LENGTH = 32
_MAX_N = 2**20  # refuses hashes whose cost would stall a login


def hash_password(password: str) -> str:
    """Return the stored form of `password` with a fresh random salt."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Return whether `password` matches `stored`; a malformed hash never matches."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), expected)


def is_password_hash(stored: str) -> bool:
    """Return whether `stored` is a hash this module can verify."""
    return _parse(stored) is not None


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt" or not all(x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    if n < 2 or n & (n - 1) or n > _MAX_N or not 0 < r <= 32 or not 0 < p <= 16:
        return None
    try:
        salt, digest = (_unb64(part) for part in parts[4:6])
    except ValueError:
        return None
    if len(salt) < 8 or len(digest) != _KEY_LENGTH:
        return None
    return n, r, p, salt, digest


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * r * n + 2**20, dklen=_KEY_LENGTH
    )


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")
