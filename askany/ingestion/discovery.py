"""Which files an ingestion covers: the folders and files given, walked under one rule for links.

Documents are recorded under the path they were found at, never under a link's target, so `--sync`
removes a document once its link is gone. A link whose target is inside the given roots is skipped
(the target is ingested under its own path); one leading out of them is followed only when
FOLLOW_SYMLINKS allows it. Everything not taken (a FIFO, a socket,
a dangling link, a link loop, an unreadable folder) is listed as skipped with its reason.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket", stat.S_IFCHR: "a character device",
          stat.S_IFBLK: "a block device"}


@dataclass
class Discovered:
    files: list[Path] = field(default_factory=list)  # absolute, as found (links not resolved), sorted per root
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # path, reason
    missing: list[Path] = field(default_factory=list)  # given paths that do not exist


def absolute(path: Path) -> Path:
    """The path made absolute and normalized, without resolving links."""
    return Path(os.path.abspath(path.expanduser()))


def discover(paths: Iterable[Path], follow_symlinks: bool = False) -> Discovered:
    roots = [absolute(Path(path)) for path in paths]
    walker = _Walker([_real(root) for root in roots if os.path.lexists(root)], follow_symlinks)
    for root in roots:
        if not os.path.lexists(root):
            walker.found.missing.append(root)
        elif root.is_dir():
            walker.walk(root)
        elif root.is_file():  # named on the command line: taken even when it is a link
            walker.found.files.append(root)
        else:
            walker.found.skipped.append((root, _why_not(root)))
    walker.found.files = list(dict.fromkeys(walker.found.files))
    return walker.found


class _Walker:
    def __init__(self, real_roots: list[Path], follow_symlinks: bool):
        self.real_roots = real_roots
        self.follow_symlinks = follow_symlinks
        self.found = Discovered()
        self._walked: set[Path] = set()  # real folders already walked: a link loop ends here

    def walk(self, folder: Path) -> None:
        real = _real(folder)
        if real in self._walked:
            return
        self._walked.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
        except OSError as error:
            self.found.skipped.append((folder, f"unreadable folder: {error.strerror or error}"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files and folders (.git, .DS_Store, editors' swap files)
            path = folder / entry.name
            if entry.is_symlink():
                self._link(path)
            elif entry.is_dir(follow_symlinks=False):
                self.walk(path)
            elif entry.is_file(follow_symlinks=False):
                self.found.files.append(path)
            else:
                self.found.skipped.append((path, _why_not(path)))

    def _link(self, path: Path) -> None:
        try:
            target = path.resolve(strict=True)
        except RuntimeError:
            self.found.skipped.append((path, "a link loop"))
            return
        except OSError as error:
            reason = "a link loop" if error.errno == errno.ELOOP else f"a broken link to {os.readlink(path)}"
            self.found.skipped.append((path, reason))
            return
        if any(target == root or target.is_relative_to(root) for root in self.real_roots):
            self.found.skipped.append((path, f"a link to {target}, which is ingested under its own path"))
        elif not self.follow_symlinks:
            self.found.skipped.append((path, f"a link to {target}, outside the ingested folders "
                                             "(FOLLOW_SYMLINKS=true follows such links)"))
        elif target.is_dir():
            self.walk(path)
        elif target.is_file():
            self.found.files.append(path)
        else:
            self.found.skipped.append((path, _why_not(target)))


def _real(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):
        return path


def _why_not(path: Path) -> str:
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    return f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'a special file')})"
