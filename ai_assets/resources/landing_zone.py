"""The landing zone: where the upstream system drops one folder of JSON Lines files per day."""


import hashlib
from pathlib import Path

from dagster import ConfigurableResource

MESSAGES_DIR = "messages"


class LandingZone(ConfigurableResource):
    """Files under `{root}/messages/YYYY-MM-DD/*.jsonl`; names starting with '.' are in flight."""

    root: str

    def day_dir(self, day: str) -> Path:
        return Path(self.root) / MESSAGES_DIR / day

    def files(self, day: str) -> list[Path]:
        folder = self.day_dir(day)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.glob("*.jsonl") if not p.name.startswith(".") and p.is_file())

    def days(self) -> list[str]:
        base = Path(self.root) / MESSAGES_DIR
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def day_fingerprint(self, day: str) -> str:
        """Changes whenever a file of that day is added, replaced or grows."""
        parts = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in self.files(day)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]

    def count_lines(self, day: str) -> int:
        """Rows a day holds, read without parsing: the volume baseline for later days."""
        total = 0
        for path in self.files(day):
            data = path.read_bytes()
            total += data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
        return total
