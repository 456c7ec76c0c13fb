"""Zip-based formats (DOCX, XLSX, PPTX): the archive is checked before parsing.

``open_archive`` reads only the central directory and refuses an archive with too many members,
too many unpacked bytes in all, or an absurd compression ratio. The directory can lie, so members
are also read through a hard cap: the bytes actually unpacked from all members together never
exceed ``MAX_UNPACKED_MB``, whatever the headers say (a member read twice counts once). CPython's
zipfile happens to stop at a member's declared size too, and then fails its CRC check (that is
how a lying header ends today); the cap does not depend on it.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from askany.ingestion.loaders.common import format_size, short_error
from askany.ingestion.loaders.limits import RATIO_CHECKED_FROM, ParseLimits, WorkBudget, over_limit
from askany.ingestion.loaders.registry import FileSkipped

# A member that cannot be opened: a bad local header, an unsupported compression method, encryption.
_OPEN_ERRORS = (zipfile.BadZipFile, NotImplementedError, RuntimeError)
# A member that breaks while it is unpacked: a bad CRC (a lying header ends there), bad deflate data.
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError)
_STEP = 1 << 20


class Archive:
    """A zip-based file whose central directory passed the limits; its members are read capped."""

    def __init__(self, archive: zipfile.ZipFile, kind: str, limits: ParseLimits):
        self._zip = archive
        self.kind = kind
        # Charged per member for the most bytes any reading of it has unpacked.
        self._unpacked = _UnpackedBytes(kind, limits.max_unpacked_bytes, "bytes", "MAX_UNPACKED_MB")

    def has(self, name: str) -> bool:
        return name in self._zip.NameToInfo

    def names(self) -> list[str]:
        return self._zip.namelist()

    @contextmanager
    def open(self, name: str) -> Iterator[_Capped]:
        """A member as a stream that refuses to unpack past the file's remaining byte budget."""
        if not self.has(name):
            raise FileSkipped(f"corrupt {self.kind}: {name} is missing")
        try:
            member = self._zip.open(name)
        except _OPEN_ERRORS as error:
            raise FileSkipped(f"corrupt {self.kind}: {name}: {short_error(error)}") from None
        try:
            with member:
                yield _Capped(member, self, name)
        except _READ_ERRORS as error:  # raised by the member's reads, wherever the reader was
            raise FileSkipped(f"corrupt {self.kind}: {name}: {short_error(error)}") from None

    def reach(self, name: str, position: int) -> None:
        """A reading of ``name`` has unpacked ``position`` bytes: refuse past MAX_UNPACKED_MB in all."""
        self._unpacked.reach(name, position)


class _UnpackedBytes(WorkBudget):
    def refusal(self) -> FileSkipped:
        limit = format_size(self.limit)
        return over_limit(f"{self.kind} unpacks to more than {limit}", limit, self.setting)


class _Capped:
    """Reads a member and reports every unpacked byte to the archive, which refuses past the cap."""

    def __init__(self, member: IO[bytes], archive: Archive, name: str):
        self._member = member
        self._archive = archive
        self._name = name
        self._position = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            return b"".join(iter(lambda: self.read(_STEP), b""))
        # At most a step at a time: a lying header must hit the cap, not allocate first.
        chunk = self._member.read(min(size, _STEP))
        self._position += len(chunk)
        self._archive.reach(self._name, self._position)
        return chunk


def open_archive(data: bytes, kind: str, limits: ParseLimits) -> Archive:
    """The archive in ``data`` if its directory is within the limits; ``FileSkipped`` otherwise."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise FileSkipped(f"corrupt {kind}: not a zip archive (an old binary Office file, or password-protected?)"
                          ) from None
    except (OSError, ValueError, EOFError) as error:
        raise FileSkipped(f"corrupt {kind}: {short_error(error)}") from None
    check_directory(archive.infolist(), kind, limits)
    return Archive(archive, kind, limits)


def check_directory(members: list[zipfile.ZipInfo], kind: str, limits: ParseLimits) -> None:
    """Refuse by the central directory alone: member count, total unpacked size, compression ratio."""
    if len(members) > limits.max_archive_members:
        raise over_limit(f"{kind} has {len(members):,} archive members", f"{limits.max_archive_members:,}",
                         "MAX_ARCHIVE_MEMBERS")
    total = sum(member.file_size for member in members)
    if total > limits.max_unpacked_bytes:
        raise over_limit(f"{kind} unpacks to {format_size(total)}", format_size(limits.max_unpacked_bytes),
                         "MAX_UNPACKED_MB")
    for member in members:
        if member.file_size <= RATIO_CHECKED_FROM:
            continue
        ratio = member.file_size / max(member.compress_size, 1)
        if ratio > limits.max_compression_ratio:
            raise over_limit(f"{kind} member {member.filename} is compressed {ratio:,.0f}:1",
                             f"{limits.max_compression_ratio:g}:1", "MAX_COMPRESSION_RATIO")
