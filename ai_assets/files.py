"""Files written whole or not at all: a temporary file beside the target, renamed over it.

A reader (a web server, the next run, a person) sees the old file or the new one, never half
of one, and a crash leaves at most a hidden `.name.<random>.tmp` behind, never a torn target.
Each write has a temporary name of its own, so two writers of one target (a sensor's run and a
re-execution) never write into each other's file; the last rename wins.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """A temporary path beside `path` for a writer that writes by path (pandas, pyarrow);
    renamed over `path` when the block ends without error, removed when it raises."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)  # gone after the rename; left over only when the writer failed


def write_atomically(path: Path | str, data: bytes, *, mode: int = 0o666, durable: bool = True) -> Path:
    """Write `data` to `path` whole. `mode` is filtered by the umask like any new file (0o600
    for files only their owner may read); `durable` fsyncs before the rename, so the new
    content survives a power cut once the call returns."""
    target = Path(path)
    with replacing(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if durable:
                out.flush()
                os.fsync(out.fileno())
    return target
