"""Which landing files may be read, and reading them safely.

The landing zone is written by another system, so its tree is untrusted input too: a symlink
in a day folder could point at `/proc/self/environ` (the process's secrets) or `/etc/passwd`,
a day folder could itself be a symlink to anywhere, a FIFO would block a reader forever, and
one 256 MB file would become one row in memory. Only regular files that are physically inside
the day folder are read, each up to a size limit; everything else is refused with a reason —
listed, counted and alerted on, never opened.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

MESSAGES_DIR = "messages"
# Agents' final categories, a day after the messages: `resolved_cases/<arrival day>/*.jsonl`.
RESOLVED_CASES_DIR = "resolved_cases"
FILE_SUFFIX = ".jsonl"
# A day of a large bank's inbox is ~1 KB a message; 64 MiB is ~50,000 messages in one file.
DEFAULT_MAX_FILE_BYTES = 64 * 1024 * 1024

# Why a file (or a whole day folder) was not read.
SYMLINK = "symlink"
NOT_A_REGULAR_FILE = "not_a_regular_file"
FILE_TOO_LARGE = "file_too_large"
OUTSIDE_LANDING_ZONE = "outside_landing_zone"
UNREADABLE = "unreadable"
DAY_FOLDER_IS_SYMLINK = "day_folder_is_symlink"
# A second name for a file elsewhere (`ln /etc/passwd day/x.jsonl` needs no symlink).
HARD_LINK = "hard_link"


class LandingFileRefused(Exception):
    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


@dataclass(frozen=True)
class RefusedFile:
    name: str
    reason: str


@dataclass
class DayScan:
    """A day folder's files: the ones to read (sorted by name) and the ones refused."""
    files: list[Path] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)

    def fingerprint_parts(self) -> list[str]:
        parts = []
        for path in self.files:
            st = path.lstat()
            parts.append(f"{path.name}:{st.st_size}:{st.st_mtime_ns}")
        return parts + [f"refused:{r.name}:{r.reason}" for r in self.refused]


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve(strict=True).parent == folder.resolve(strict=True)
    except OSError:
        return False


def scan_day(root: Path, day: str, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
             feed: str = MESSAGES_DIR) -> DayScan:
    """The candidate files of `{root}/{feed}/{day}/*.jsonl`; names starting with '.' are in
    flight and not looked at. Nothing is opened here (lstat only), so a FIFO cannot block."""
    base = root / feed
    folder = base / day
    scan = DayScan()
    if folder.is_symlink():
        scan.refused.append(RefusedFile(day, DAY_FOLDER_IS_SYMLINK))
        return scan
    if not folder.is_dir() or not _inside(folder, base):
        return scan
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        name = entry.name
        if name.startswith(".") or not name.endswith(FILE_SUFFIX):
            continue
        path = folder / name
        try:
            st = path.lstat()
        except OSError:
            scan.refused.append(RefusedFile(name, UNREADABLE))
            continue
        if stat.S_ISLNK(st.st_mode):
            scan.refused.append(RefusedFile(name, SYMLINK))
        elif not stat.S_ISREG(st.st_mode):
            scan.refused.append(RefusedFile(name, NOT_A_REGULAR_FILE))
        elif st.st_nlink > 1:
            scan.refused.append(RefusedFile(name, HARD_LINK))
        elif st.st_size > max_file_bytes:
            scan.refused.append(RefusedFile(name, FILE_TOO_LARGE))
        elif not _inside(path, folder):
            scan.refused.append(RefusedFile(name, OUTSIDE_LANDING_ZONE))
        else:
            scan.files.append(path)
    return scan


def read_landing_file(path: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, at most `max_file_bytes`. Re-checks on the open descriptor what
    `scan_day` saw, because the file can be swapped between the scan and the read: O_NOFOLLOW
    refuses a symlink put there since, O_NONBLOCK keeps a FIFO from blocking the open, and the
    read stops one byte past the limit however large the file has grown."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise LandingFileRefused(path.name, SYMLINK if path.is_symlink() else UNREADABLE) from exc
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise LandingFileRefused(path.name, NOT_A_REGULAR_FILE)
        if st.st_nlink > 1:
            raise LandingFileRefused(path.name, HARD_LINK)
        data = f.read(max_file_bytes + 1)
    if len(data) > max_file_bytes:
        raise LandingFileRefused(path.name, FILE_TOO_LARGE)
    return data


def list_days(root: Path, feed: str = MESSAGES_DIR) -> list[str]:
    """Names of the day folders, symlinked ones included (they are refused when scanned, visibly)."""
    base = root / feed
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_symlink() or p.is_dir())
