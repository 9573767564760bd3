"""Where a response's bytes wait between the wire and the WARC.

A WARC record's header (Content-Length, digests) must precede its block, and a chunked or read-until-close
response's length is known only at its end, so the bytes must be held somewhere first. Small responses stay in
memory; anything larger spills to an unlinked temporary file, so no body is ever held whole in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

SPILL_AT = 1 << 20  # bytes kept in memory before spilling to disk
READ_BLOCK = 1 << 18


class DiskError(Exception):
    """Writing to local disk failed (full, read-only...). Not an OSError on purpose: network code catches
    OSError as "the connection failed", and a full disk must stop the crawl, not pass for a network fault."""


class Spool:
    __slots__ = ("_buf", "_file", "_dir", "size")

    def __init__(self, directory: str | None = None) -> None:
        self._buf = bytearray()
        self._file = None
        self._dir = directory
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self._file is None:
            self._buf += data
            if len(self._buf) > SPILL_AT:
                try:
                    self._file = tempfile.TemporaryFile(prefix=".archiver-spool-", dir=self._dir)
                    self._file.write(self._buf)
                except OSError as e:
                    raise DiskError(f"cannot spool a response in {self._dir or 'the temp dir'}: "
                                    f"{e.strerror or e}") from e
                self._buf = bytearray()
        else:
            try:
                self._file.write(data)
            except OSError as e:
                raise DiskError(f"cannot spool a response: {e.strerror or e}") from e

    @property
    def in_memory(self) -> bool:
        return self._file is None

    def getvalue(self) -> bytes:
        """All bytes (only for spools known to be small)."""
        if self._file is None:
            return bytes(self._buf)
        self._file.seek(0)
        return self._file.read()

    def read_range(self, start: int, length: int) -> bytes:
        if self._file is None:
            return bytes(self._buf[start:start + length])
        self._file.seek(start)
        return self._file.read(length)

    def chunks(self, start: int = 0) -> Iterator[bytes | memoryview]:
        """The bytes from `start` to the end, in blocks."""
        if self._file is None:
            if start < len(self._buf):
                yield memoryview(self._buf)[start:]
            return
        f = self._file
        f.flush()
        f.seek(start)
        while True:
            block = f.read(READ_BLOCK)
            if not block:
                return
            yield block

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._buf = bytearray()
