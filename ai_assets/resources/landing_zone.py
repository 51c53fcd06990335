"""The landing zone: where the upstream system drops one folder of JSON Lines files per day."""


import hashlib
from pathlib import Path

from dagster import ConfigurableResource

from ai_assets.ingestion.landing_files import (
    DEFAULT_MAX_FILE_BYTES,
    MESSAGES_DIR,
    RESOLVED_CASES_DIR,
    DayScan,
    LandingFileRefused,
    list_days,
    read_landing_file,
    scan_day,
)

__all__ = ["LandingZone", "MESSAGES_DIR", "RESOLVED_CASES_DIR"]


class LandingZone(ConfigurableResource):
    """Files under `{root}/messages/YYYY-MM-DD/*.jsonl` (and the resolved-cases feed under
    `{root}/resolved_cases/YYYY-MM-DD/`, `feed=RESOLVED_CASES_DIR`); names starting with '.' are in flight.
    Only regular files inside the day folder are read, each up to `max_file_bytes`; symlinks,
    FIFOs, hard links and over-large files are refused (see `ingestion/landing_files.py`)."""

    root: str
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES

    def day_dir(self, day: str) -> Path:
        return Path(self.root) / MESSAGES_DIR / day

    def scan(self, day: str, feed: str = MESSAGES_DIR) -> DayScan:
        return scan_day(Path(self.root), day, self.max_file_bytes, feed)

    def files(self, day: str, feed: str = MESSAGES_DIR) -> list[Path]:
        return self.scan(day, feed).files

    def read(self, path: Path) -> bytes:
        """Raises `LandingFileRefused` for a file that changed into something not to read."""
        return read_landing_file(path, self.max_file_bytes)

    def days(self, feed: str = MESSAGES_DIR) -> list[str]:
        return list_days(Path(self.root), feed)

    def day_fingerprint(self, day: str, feed: str = MESSAGES_DIR) -> str:
        """Changes whenever a file of that day is added, replaced, grows or is refused."""
        return hashlib.sha256("\n".join(self.scan(day, feed).fingerprint_parts()).encode()).hexdigest()[:16]

    def count_lines(self, day: str) -> int:
        """Rows a day holds, read without parsing: the volume baseline for later days."""
        total = 0
        for path in self.files(day):
            try:
                data = self.read(path)
            except LandingFileRefused:  # refused since the scan: counted as no rows, as raw_messages does
                continue
            total += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        return total
