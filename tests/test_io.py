"""Artifact files: a full disk is one line naming the file with nothing half-written left; reads take
regular files only, so a FIFO, a folder or a device is refused instead of blocking or misreading."""

from __future__ import annotations

import errno
import os

import pytest

from at2seld_edge.errors import EdgeError
from at2seld_edge.io import atomic_path, atomic_write_text


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_one_line_naming_the_file_and_leaves_nothing(tmp_path, code):
    target = tmp_path / "out" / "best.pt"
    atomic_write_text(target, "the previous epoch's")
    with pytest.raises(EdgeError) as e:
        with atomic_path(target) as tmp:
            tmp.write_text("half a checkpoint")
            raise OSError(code, os.strerror(code))  # what the next write() of a full disk returns
    assert str(e.value).startswith(f"{target}: not written: {os.strerror(code).lower()}") and "\n" not in str(e.value)
    assert sorted(p.name for p in target.parent.iterdir()) == ["best.pt"]  # no temporary file left beside it
    assert target.read_text() == "the previous epoch's"  # the file before stays whole


def test_other_write_errors_are_left_to_their_caller(tmp_path):
    with pytest.raises(PermissionError):
        with atomic_path(tmp_path / "x") as tmp:
            raise PermissionError(errno.EACCES, "denied", str(tmp))
    assert list(tmp_path.iterdir()) == []


def test_only_regular_files_are_read(tmp_path):
    from at2seld_edge.io import read_regular_file

    fifo = tmp_path / "labels.csv"
    os.mkfifo(fifo)  # no writer: a plain open() would block forever
    with pytest.raises(EdgeError, match=r"labels.csv: is a FIFO \(named pipe\), not a regular file; give the label "
                                        "file itself"):
        read_regular_file(fifo, "label file")
    with pytest.raises(EdgeError, match="is a folder, not a regular file"):
        read_regular_file(tmp_path, "config")
    with pytest.raises(EdgeError, match="is a character device, not a regular file"):
        read_regular_file("/dev/zero", "config")
    with pytest.raises(EdgeError, match="absent.yaml: cannot read config: No such file or directory"):
        read_regular_file(tmp_path / "absent.yaml", "config")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2048)
    with pytest.raises(EdgeError, match="big.json: larger than 1,024 bytes; too large for a record"):
        read_regular_file(big, "record", max_bytes=1024)
    assert read_regular_file(big, "record") == b" " * 2048
