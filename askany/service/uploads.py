"""Uploaded files: safe names, one folder per knowledge base, size limits. The same rules for every door."""

from __future__ import annotations

import hashlib
import re
import shutil
import unicodedata
from pathlib import Path

from askany.core.errors import AskAnyError

MAX_NAME_BYTES = 200


class UploadError(AskAnyError):
    """An uploaded file cannot be accepted (bad name, too large)."""


_UNSAFE_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # controls, bidi/zero-width, unassigned
_RESERVED = re.compile(r'[<>:"|?*]')


def safe_upload_name(name: str) -> str:
    """A file name that stays a plain name inside the upload folder, or UploadError.

    NFKC first, so full-width ``／`` and ``．`` become ``/`` and ``.`` before the
    directory parts (POSIX or Windows) are stripped; then control, bidi and
    zero-width characters go (they make ``txt.exe`` look like ``exe.txt``),
    characters Windows forbids become ``_``, leading dots go (no hidden files, no
    ``..``). Chinese characters are kept. The name is cut to a safe byte length,
    keeping its extension.
    """
    text = unicodedata.normalize("NFKC", name or "")
    text = text.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(" " if ch.isspace() else ch for ch in text
                   if unicodedata.category(ch) not in _UNSAFE_CATEGORIES)
    text = _RESERVED.sub("_", text)
    text = re.sub(r" {2,}", " ", text).strip().lstrip(".").rstrip(". ")
    if not text or not any(ch.isalnum() for ch in text):
        raise UploadError(f"The file name {name!r} has no usable characters; rename the file")
    if len(text.encode("utf-8")) <= MAX_NAME_BYTES:
        return text
    stem, dot, suffix = text.rpartition(".")
    if not dot or not stem:
        stem, suffix = text, ""
    suffix = f".{suffix[:16]}" if suffix else ""
    room = MAX_NAME_BYTES - len(suffix.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", "ignore").rstrip(". ") + suffix


_FOLDER_UNSAFE = set('/\\%:*?"<>|')


def kb_folder_name(kb: str) -> str:
    """A knowledge base's upload folder name: one folder per name, never shared by two names.

    Characters a folder name cannot hold (separators, Windows-reserved ones, controls, ``%``
    itself, a leading dot) are percent-encoded, so the name reads as itself when it can and
    ``urllib.parse.unquote`` gives the knowledge base back: ``evil/main`` is ``evil%2Fmain``, never
    ``main``. A name too long for a folder keeps its start and gets a hash of the whole.
    """
    folder = "".join(ch if ch.isprintable() and ch not in _FOLDER_UNSAFE
                     else "".join(f"%{byte:02X}" for byte in ch.encode("utf-8", "surrogatepass")) for ch in kb)
    if folder.startswith("."):
        folder = "%2E" + folder[1:]
    if len(folder.encode("utf-8")) > MAX_NAME_BYTES:
        digest = hashlib.sha256(kb.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        folder = folder.encode("utf-8")[:MAX_NAME_BYTES - 17].decode("utf-8", "ignore") + "~" + digest
    return folder


def upload_destination(upload_dir: Path, kb: str, name: str) -> Path:
    """Where an upload is stored: ``UPLOAD_DIR/<kb folder>/<safe name>``, checked to be inside UPLOAD_DIR."""
    if not kb.strip():
        raise UploadError("The knowledge base name is empty")
    root = upload_dir.expanduser().resolve()
    target = (root / kb_folder_name(kb) / safe_upload_name(name)).resolve()
    if not target.is_relative_to(root) or target.parent == root:
        raise UploadError(f"The file name {name!r} would leave the upload folder; rename the file")
    return target




def store_upload(upload_dir: Path, kb: str, path: Path, limit_mb: float) -> Path:
    """Copy an uploaded file into its knowledge base's upload folder; UploadError when it cannot be."""
    if not path.is_file():
        raise UploadError(f"The upload {path.name!r} is not a file")
    if path.stat().st_size > limit_mb * 1024 * 1024:
        raise UploadError(f"{path.name} is larger than the {limit_mb:g} MB upload limit (UPLOAD_MAX_MB)")
    target = upload_destination(upload_dir, kb, path.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target


def remove_uploaded_copy(upload_dir: Path, source: str) -> bool:
    """Remove a document's file if it is an upload (inside the upload folder); other files are never touched."""
    root = upload_dir.expanduser().resolve()
    path = Path(source)
    if path.resolve().is_relative_to(root) and path.is_file():
        path.unlink()
        return True
    return False
