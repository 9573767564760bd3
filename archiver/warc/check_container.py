"""The container layer of the checker: a WARC file's decompressed bytes, member by member.

We walk gzip members with zlib ourselves instead of using gzip.GzipFile or warcio's reader, because those hide
exactly what must be reported: where each member starts (one record per member), a CRC or ISIZE error (zlib
checks both when given wbits=31 and raises), a member cut off at end of file, and bytes between members.
After damage we resynchronise on the next member that decompresses to a WARC version line, so the rest of the
file is still checked.

A source yields events, in file order:
  (MEMBER, offset)  a new gzip member starts at this compressed offset (uncompressed files: one, at 0);
  (DATA, bytes)     decompressed bytes of the current member, at most OUT_SIZE at a time;
  (BREAK, offset)   data was lost before this point: drop the record in progress and look for the next one.
Container defects go to `report(code, message, offset)`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from typing import BinaryIO

try:  # ISA-L inflates 2-3x faster than zlib, and inflating is most of a check's time; same interface
    from isal import isal_zlib as inflate
except ImportError:  # pragma: no cover - depends on the installation
    inflate = zlib  # type: ignore[assignment]

MEMBER, DATA, BREAK = 0, 1, 2

READ_SIZE = 1 << 20  # compressed bytes read from the file at a time
FEED_SIZE = 1 << 16  # compressed bytes given to zlib per call: zlib copies the unused rest at each member end
OUT_SIZE = 1 << 20  # decompressed bytes per DATA event: bounds memory whatever the record size
GZIP_MAGIC = b"\x1f\x8b\x08"  # magic and the deflate method byte
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

Report = Callable[[str, str, int], None]
Event = tuple[int, object]


def sniff(head: bytes) -> str:
    """'gzip', 'zstd' or 'plain', from a file's first bytes."""
    if head.startswith(GZIP_MAGIC[:2]):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    return "plain"


def plain_events(f: BinaryIO) -> Iterator[Event]:
    """An uncompressed file: one 'member' holding the whole file."""
    yield MEMBER, 0
    while True:
        data = f.read(OUT_SIZE)
        if not data:
            return
        yield DATA, data


class GzipEvents:
    """Iterate the members of a gzip file, reporting container defects."""

    def __init__(self, f: BinaryIO, report: Report) -> None:
        self.f = f
        self.report = report
        self.buf = b""  # compressed bytes read but not yet consumed
        self.pos = 0  # index into buf
        self.buf_offset = 0  # file offset of buf[0]
        self.at_eof = False
        self.members = 0

    # ---- buffer --------------------------------------------------------------------------------------------
    def _offset(self) -> int:
        return self.buf_offset + self.pos

    def _fill(self, need: int) -> bool:
        """Make at least `need` unconsumed bytes available if the file has them."""
        while len(self.buf) - self.pos < need and not self.at_eof:
            more = self.f.read(READ_SIZE)
            if not more:
                self.at_eof = True
                break
            self.buf_offset += self.pos
            self.buf = self.buf[self.pos:] + more
            self.pos = 0
        return len(self.buf) - self.pos >= need

    def _seek(self, offset: int) -> None:
        self.f.seek(offset)
        self.buf, self.pos, self.buf_offset, self.at_eof = b"", 0, offset, False

    # ---- members -------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Event]:
        while self._fill(1):
            start = self._offset()
            if not self._fill(3) or self.buf[self.pos:self.pos + 3] != GZIP_MAGIC:
                self._skip_garbage(start)
                continue
            self.members += 1
            yield MEMBER, start
            error = yield from self._member()
            if error:
                code, message = error
                self.report(code, f"gzip member at offset {start}: {message}", start)
                if code == "gzip-truncated":
                    return  # nothing follows; the record layer sees the file end inside its record
                yield BREAK, start
                self._resync(start + 1)

    def _member(self) -> Iterator[Event]:
        """Decompress one member; return (code, message) when it is damaged, None when it is sound."""
        flags = self.buf[self.pos + 3] if self._fill(4) else 0
        if flags & 0xE0:  # reserved bits: zlib rejects them, ISA-L does not
            return "gzip-corrupt", f"reserved header flag bits are set ({flags:#04x})"
        d = inflate.decompressobj(31)  # gzip wrapper: the inflater checks the header, CRC-32 and ISIZE itself
        buf_view = memoryview(self.buf)
        try:
            while True:
                if d.unconsumed_tail:
                    out = d.decompress(d.unconsumed_tail, OUT_SIZE)
                else:
                    if not self._fill(1):
                        out = d.decompress(b"", OUT_SIZE)  # flush what zlib still holds
                        if out:
                            yield DATA, out
                            continue
                        return "gzip-truncated", f"the file ends inside the member (at offset {self._offset()})"
                    if buf_view.obj is not self.buf:
                        buf_view = memoryview(self.buf)
                    feed = buf_view[self.pos:self.pos + FEED_SIZE]
                    self.pos += len(feed)
                    out = d.decompress(feed, OUT_SIZE)
                if out:
                    yield DATA, out
                if d.eof:
                    self.pos -= len(d.unused_data)
                    return None
        except INFLATE_ERRORS as e:
            text = str(e)
            if "incorrect data check" in text or "incorrect length check" in text or "checksum" in text.lower():
                return "gzip-crc-error", f"the CRC-32 or ISIZE trailer does not match the decompressed data ({text})"
            return "gzip-corrupt", f"cannot be decompressed ({text})"

    def _skip_garbage(self, start: int) -> None:
        """Bytes that do not start a gzip member: skip to the next member that holds a WARC record."""
        found = self._resync(start, quiet=True)
        skipped = (found if found is not None else self._offset()) - start
        if found is None:
            if self.members:
                self.report("trailing-garbage", f"{skipped} bytes after the last gzip member are not gzip data "
                                                f"(they start {self._peek(start)!r})", start)
            else:
                self.report("gzip-corrupt", "no gzip member holding a WARC record was found in the file", start)
        else:
            self.report("gzip-garbage", f"{skipped} bytes at offset {start} are not gzip data "
                                        f"(they start {self._peek(start)!r})", start)

    def _peek(self, offset: int) -> bytes:
        here = self.f.tell()
        self.f.seek(offset)
        data = self.f.read(16)
        self.f.seek(here)
        return data

    def _resync(self, start: int, quiet: bool = False) -> int | None:
        """Position at the first gzip member at or after `start` whose data begins with a WARC version line.

        Returns its offset, or None (positioned at end of file) when there is none.
        """
        self._seek(start)
        while True:
            self._fill(FEED_SIZE)
            i = self.buf.find(GZIP_MAGIC, self.pos)
            if i < 0:
                if self.at_eof:
                    self.pos = len(self.buf)
                    if not quiet:
                        self.report("resynchronised", f"no readable record after offset {start}", start)
                    return None
                self.pos = max(self.pos, len(self.buf) - len(GZIP_MAGIC) + 1)
                self._fill(len(self.buf) - self.pos + 1)  # read on
                continue
            self.pos = i
            self._fill(FEED_SIZE)
            if _starts_warc_record(self.buf[self.pos:self.pos + FEED_SIZE]):
                found = self._offset()
                if not quiet:
                    self.report("resynchronised", f"skipped {found - start + 1} bytes after the damaged member; "
                                                  f"checking resumes at offset {found}", found)
                return found
            self.pos += 1


def _starts_warc_record(compressed: bytes) -> bool:
    d = zlib.decompressobj(31)
    try:
        return d.decompress(compressed, 8).startswith(b"WARC/")
    except zlib.error:
        return False


INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, getattr(inflate, "error", zlib.error))
