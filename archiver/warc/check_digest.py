"""WARC digest values: `algorithm:value`, with the value in base32, base16 or base64 (all three occur in the wild)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from typing import Any

# label (lower case, dashes removed) -> digest size in bytes
DIGEST_SIZES = {"sha1": 20, "sha256": 32, "sha512": 64, "md5": 16, "sha224": 28, "sha384": 48}

_HEX = re.compile(r"[0-9A-Fa-f]+")


class DigestError(ValueError):
    """A digest field that cannot be verified; `code` is the finding code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def parse_digest(value: str) -> tuple[str, bytes]:
    """('sha1', raw digest bytes) from a field value such as 'sha1:3I42H3S6NNFQ2MSVX7XZKYAYSCX5QBYJ'."""
    label, sep, encoded = value.strip().partition(":")
    algorithm = label.strip().lower().replace("-", "")
    if not sep or not encoded:
        raise DigestError("invalid-digest", f"digest {value!r} is not 'algorithm:value'")
    size = DIGEST_SIZES.get(algorithm)
    if size is None:
        raise DigestError("unknown-digest-algorithm", f"digest algorithm {label!r} is not one of "
                                                      f"{', '.join(sorted(DIGEST_SIZES))}")
    raw = _decode(encoded.strip(), size)
    if raw is None:
        raise DigestError("invalid-digest", f"digest value {encoded!r} is not a {algorithm} digest in base32, "
                                            "base16 or base64")
    return algorithm, raw


# base32 (RFC 4648) digits mapped onto the digits int(x, 32) reads: decoding then runs in C, not in base64.py
_B32_AS_INT = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567abcdefghijklmnopqrstuvwxyz",
                            "0123456789abcdefghijklmnopqrstuv0123456789abcdefghijklmnop")
_B32 = re.compile(r"[A-Za-z2-7]+")


def _decode(encoded: str, size: int) -> bytes | None:
    if len(encoded) == 2 * size and _HEX.fullmatch(encoded):
        return bytes.fromhex(encoded)
    try:
        unpadded = encoded.rstrip("=")
        digits = -(-size * 8 // 5)
        if len(unpadded) == digits and _B32.fullmatch(unpadded):
            value = int(unpadded.translate(_B32_AS_INT), 32) >> (digits * 5 - size * 8)
            return value.to_bytes(size, "big")
        if len(unpadded) == -(-size * 4 // 3):
            padded = unpadded + "=" * (-len(unpadded) % 4)
            altchars = b"-_" if ("-" in padded or "_" in padded) else None
            raw = base64.b64decode(padded, altchars=altchars, validate=True)
            if len(raw) == size:
                return raw
    except (binascii.Error, ValueError):
        return None
    return None


def hasher(algorithm: str) -> Callable[[], Any]:
    """The hashlib constructor for a label parse_digest returned."""
    return getattr(hashlib, algorithm)


def sha1_base32(data: bytes) -> str:
    """The usual WARC form of a SHA-1 digest (for writers and tests)."""
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode("ascii")
