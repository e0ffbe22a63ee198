"""ProcFile: a kept-open file read whole every time, with a read size that follows
the file's length."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from clumon.agent.collectors.base import ProcFile, _buffer_for


def test_a_file_that_grows_past_the_read_size_is_still_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a" * 10)
    f = ProcFile(str(path))
    assert f.read() == b"a" * 10
    big = bytes(range(256)) * 300  # 76,800 bytes: many reads of the 1 KiB size learned above
    path.write_bytes(big)
    assert f.read() == big
    path.write_bytes(b"short")
    assert f.read() == b"short"
    f.close()


def test_a_missing_file_reads_none_and_is_tried_again(tmp_path: Path) -> None:
    f = ProcFile(str(tmp_path / "later"))
    assert f.read() is None
    (tmp_path / "later").write_bytes(b"now\n")
    assert f.read() == b"now\n"
    f.close()


@pytest.mark.parametrize("length,size", [(0, 1024), (16, 1024), (600, 2048), (3970, 8192), (40000, 65536),
                                         (10**6, 65536)])
def test_read_size_is_twice_the_length_in_powers_of_two_from_1_to_64_kib(length: int, size: int) -> None:
    assert _buffer_for(length) == size


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")
@pytest.mark.parametrize("name", ["stat", "meminfo", "vmstat", "net/dev", "sys/fs/file-nr"])
def test_real_proc_files_read_the_same_as_a_plain_read(name: str) -> None:
    f = ProcFile(f"/proc/{name}")
    f.read()  # learn the size
    ours = f.read()
    plain = Path(f"/proc/{name}").read_bytes()
    f.close()
    # counters move between the two reads; the shape (lines, fields per line) does not
    assert [len(line.split()) for line in ours.splitlines()] == [len(line.split()) for line in plain.splitlines()]
    assert ours.endswith(b"\n")


def _counting_preads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import clumon.agent.collectors.base as base

    calls: list[int] = []
    real = base.os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        calls.append(offset)
        return real(fd, n, offset)

    monkeypatch.setattr(base.os, "pread", pread)
    return calls


def test_a_short_first_read_of_a_small_file_is_the_whole_file_no_read_for_eof(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"cpu 1 2 3\n" * 100)  # 1,000 bytes
    f = ProcFile(str(path))
    calls = _counting_preads(monkeypatch)
    assert f.read() == b"cpu 1 2 3\n" * 100
    assert f.read() == b"cpu 1 2 3\n" * 100
    assert calls == [0, 0]
    f.close()


def test_a_first_read_longer_than_2_kib_reads_on_to_eof(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a seq_file may stop short of EOF at a page boundary: past 2 KiB a short read
    # is not taken for the whole file
    body = b"pgfault 12345678\n" * 200  # 3,400 bytes
    path = tmp_path / "f"
    path.write_bytes(body)
    f = ProcFile(str(path))
    calls = _counting_preads(monkeypatch)
    assert f.read() == body
    assert calls == [0, len(body)]
    f.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs Linux /proc")
def test_a_proc_file_larger_than_a_page_is_read_whole() -> None:
    # /proc/self/maps is a seq_file of one record per mapping: many pages here
    f = ProcFile("/proc/self/maps")
    for _ in range(3):
        ours = f.read()
        assert len(ours) > 4096 and ours.endswith(b"\n")
        assert abs(len(ours.splitlines()) - len(Path("/proc/self/maps").read_bytes().splitlines())) <= 2
    f.close()
