"""`ai_assets.files`: a target is replaced whole or left as it was, with nothing left behind."""

import os
import stat

import pandas as pd
import pytest

from ai_assets.files import replacing, write_atomically


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_a_write_replaces_the_target_whole(tmp_path):
    target = tmp_path / "index.html"
    target.write_bytes(b"old")
    assert write_atomically(target, b"new page") == target
    assert target.read_bytes() == b"new page" and leftovers(tmp_path) == []


def test_a_failed_writer_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "day.parquet"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        with replacing(target) as tmp:
            pd.DataFrame({"a": [1]}).to_parquet(tmp)
            raise TypeError("the writer failed half way")
    assert target.read_bytes() == b"old" and leftovers(tmp_path) == []


def test_the_mode_is_the_one_asked_for_under_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        private = write_atomically(tmp_path / "mail.eml", b"x", mode=0o600)
        public = write_atomically(tmp_path / "report.html", b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
