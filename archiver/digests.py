"""Whole-file digests, read in blocks so a file of any size costs a megabyte of memory."""

from __future__ import annotations

import hashlib
import os

BLOCK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> tuple[int, str]:
    """(size in bytes, SHA-256 hex) of the file's bytes as read now."""
    sha = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()
