"""The bounded spool of unacknowledged frames, on an injected clock."""

from __future__ import annotations

import os
import shutil

import pytest

from clumon.proto.spool import Spool


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def seqs(spool: Spool) -> list[int]:
    return [e.seq for e in spool.all()]


def test_keeps_frames_in_seq_order_until_acked(clock):
    spool = Spool(clock=clock)
    for s in range(1, 6):
        spool.add(s, b"x" * s)
    assert len(spool) == 5 and spool.bytes == 15
    assert spool.ack([2, 4, 99]) == 2
    assert seqs(spool) == [1, 3, 5]
    assert spool.bytes == 9 and spool.acked_total == 2
    assert spool.ack([2]) == 0, "a repeated ack is harmless"
    assert spool.acked_total == 2


def test_ack_ranges_small_and_huge(clock):
    spool = Spool(clock=clock)
    for s in range(1, 11):
        spool.add(s, b"x")
    assert spool.ack_ranges([(2, 3), (7, 7)]) == 3
    assert seqs(spool) == [1, 4, 5, 6, 8, 9, 10]
    # a range far wider than the spool must not walk every seq in it
    assert spool.ack_ranges([(5, 2**62)]) == 5
    assert seqs(spool) == [1, 4]
    assert spool.ack_ranges([(0, 2**63 - 1)]) == 2
    assert len(spool) == 0 and spool.bytes == 0


def test_overflow_by_bytes_drops_oldest_and_counts(clock):
    spool = Spool(max_bytes=100, clock=clock)
    for s in range(1, 11):
        spool.add(s, b"x" * 30)
    assert spool.bytes <= 100
    assert seqs(spool) == [8, 9, 10]
    assert spool.dropped_total == 7
    assert spool.take_drop_count() == 7
    assert spool.take_drop_count() == 0, "each loss is reported once"
    spool.add(11, b"x" * 30)
    assert spool.take_drop_count() == 1 and spool.dropped_total == 8


def test_a_single_frame_larger_than_the_bound_is_kept(clock):
    """Dropping the only frame would lose it without making room for anything."""
    spool = Spool(max_bytes=10, clock=clock)
    spool.add(1, b"x" * 50)
    assert seqs(spool) == [1] and spool.dropped_total == 0
    spool.add(2, b"x" * 50)
    assert seqs(spool) == [2] and spool.dropped_total == 1


def test_overflow_by_age_on_add_and_on_expire(clock):
    spool = Spool(max_age=60.0, clock=clock)
    spool.add(1, b"a")
    clock.t += 30
    spool.add(2, b"b")
    assert spool.oldest_age() == 30
    clock.t += 30.5  # seq 1 is 60.5 s old, seq 2 30.5 s
    spool.expire()
    assert seqs(spool) == [2]
    assert spool.take_drop_count() == 1
    clock.t += 60
    spool.add(3, b"c")  # adding also applies the age bound
    assert seqs(spool) == [3]
    assert spool.dropped_total == 2
    assert spool.bytes == 1


def test_frame_exactly_max_age_old_is_kept(clock):
    spool = Spool(max_age=60.0, clock=clock)
    spool.add(1, b"a")
    clock.t += 60
    spool.expire()
    assert len(spool) == 1


def test_due_lists_unsent_and_stale_frames(clock):
    spool = Spool(clock=clock)
    for s in (1, 2, 3):
        spool.add(s, b"x")
    assert [e.seq for e in spool.due(older_than=clock.t)] == [1, 2, 3], "never sent: all due"
    spool.mark_sent(1, 1000.0)
    spool.mark_sent(2, 1010.0)
    spool.mark_sent(99, 1010.0)  # unknown seq: ignored
    assert [e.seq for e in spool.due(older_than=1005.0)] == [1, 3]
    assert [e.seq for e in spool.due(older_than=float("inf"))] == [1, 2, 3]


def test_all_is_a_snapshot_safe_to_ack_while_iterating(clock):
    spool = Spool(clock=clock)
    for s in (1, 2, 3):
        spool.add(s, b"x")
    for e in spool.all():
        spool.ack([e.seq])
    assert len(spool) == 0


def test_adding_a_seq_again_replaces_it_without_leaking_bytes(clock):
    spool = Spool(max_bytes=100, clock=clock)
    spool.add(1, b"x" * 40)
    spool.add(1, b"y" * 10)
    assert len(spool) == 1
    assert spool.bytes == 10
    assert [e.data for e in spool.all()] == [b"y" * 10]
    spool.ack([1])
    assert spool.bytes == 0


def test_empty_spool():
    spool = Spool()
    assert len(spool) == 0 and spool.bytes == 0 and spool.oldest_age() == 0.0
    assert list(spool.due(float("inf"))) == []
    spool.expire()
    assert spool.ack_ranges([(1, 10)]) == 0


def test_frames_spill_to_disk_and_read_back(tmp_path, clock):
    spool = Spool(clock=clock, directory=tmp_path, incarnation=7, memory_bytes=100)
    for s in range(1, 21):
        spool.add(s, bytes([s]) * 30, 7)
    on_disk = [e for e in spool.all() if e.data is None]
    assert on_disk, "beyond memory_bytes the oldest frames live only on disk"
    assert all(spool.data(e) == bytes([e.seq]) * 30 for e in spool.all())
    assert list(tmp_path.glob("spool-7-*.seg"))


def test_acked_segments_are_deleted(tmp_path, clock, monkeypatch):
    import clumon.proto.spool as mod
    monkeypatch.setattr(mod, "SEGMENT_BYTES", 100)
    spool = Spool(clock=clock, directory=tmp_path, incarnation=7)
    for s in range(1, 21):
        spool.add(s, b"x" * 40, 7)
    assert len(list(tmp_path.glob("*.seg"))) > 3
    spool.ack_ranges([(1, 20)], 7)
    assert len(spool) == 0
    assert len(list(tmp_path.glob("*.seg"))) <= 1, "only the open segment may remain"


def test_a_killed_process_leaves_frames_the_next_one_recovers(tmp_path, clock):
    first = Spool(clock=clock, directory=tmp_path, incarnation=1)
    for s in range(1, 6):
        first.add(s, f"frame-{s}".encode(), 1)
    first.ack([2], 1)
    first.flush()  # the uplink's tick
    # no close(): the process was killed; a torn record at the end must not hurt
    seg = sorted(tmp_path.glob("*.seg"))[-1]
    with open(seg, "ab") as fh:
        fh.write(b"\x01\x02\x03")
    second = Spool(clock=clock, directory=tmp_path, incarnation=2)
    got = {(e.incarnation, e.seq): second.data(e) for e in second.all()}
    assert got == {(1, s): f"frame-{s}".encode() for s in (1, 3, 4, 5)}
    assert second.recovered == 4
    # acks for the previous incarnation empty it, and its segment goes away
    second.ack_ranges([(1, 5)], 1)
    assert len(second) == 0
    assert not [p for p in tmp_path.glob("spool-1-*.seg")]


def test_overflow_counts_recovered_frames_too(tmp_path, clock):
    first = Spool(clock=clock, directory=tmp_path, incarnation=1)
    for s in range(1, 6):
        first.add(s, b"x" * 50, 1)
    second = Spool(max_bytes=120, clock=clock, directory=tmp_path, incarnation=2)
    second.add(1, b"y" * 50, 2)
    assert second.bytes <= 120
    assert second.dropped_total == 4
    assert [(e.incarnation, e.seq) for e in second.all()] == [(1, 5), (2, 1)]


def test_the_pinned_hello_is_never_evicted(clock):
    spool = Spool(max_bytes=100, clock=clock)
    spool.add(1, b"h" * 40)
    spool.pin(1)
    for s in range(2, 8):
        spool.add(s, b"d" * 30)
    assert seqs(spool)[0] == 1, "the HELLO the later frames refer to stays"
    assert spool.bytes <= 100 or len(spool) == 2
    spool.ack([1])
    spool.add(8, b"d" * 30)
    assert 1 not in seqs(spool)


def test_acks_are_written_with_the_next_frame_and_a_crash_before_only_replays(tmp_path, clock):
    # memory_bytes=0: every frame is read back from its segment, at its offset
    first = Spool(clock=clock, directory=tmp_path / "spool", incarnation=1, memory_bytes=0)
    for s in range(1, 4):
        first.add(s, f"frame-{s}".encode(), 1)
    seg = sorted((tmp_path / "spool").glob("*.seg"))[-1]
    size = seg.stat().st_size
    first.ack([1], 1)
    assert seg.stat().st_size == size, "the ack record waits for the next write"
    # killed now: frame 1 comes back (sent again, stored once by the root), none lost
    shutil.copytree(tmp_path / "spool", tmp_path / "killed")
    replayed = Spool(clock=clock, directory=tmp_path / "killed", incarnation=2)
    assert sorted(e.seq for e in replayed.all()) == [1, 2, 3]
    first.add(4, b"frame-4", 1)  # one write: the ack record, then the frame
    assert {e.seq: first.data(e) for e in first.all()} == {2: b"frame-2", 3: b"frame-3", 4: b"frame-4"}
    first.close()
    again = Spool(clock=clock, directory=tmp_path / "spool", incarnation=3)
    assert {e.seq: again.data(e) for e in again.all()} == {2: b"frame-2", 3: b"frame-3", 4: b"frame-4"}


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_segment_write_that_fails_keeps_the_frame_in_memory(tmp_path, clock, caplog):
    """A full disk (writes to /dev/full fail with ENOSPC): no exception, no frame lost,
    one line in the log; the next frame goes to a new segment once writes work."""
    spool = Spool(clock=clock, directory=tmp_path, incarnation=1, memory_bytes=0)
    spool.add(1, b"frame-1", 1)
    spool._seg_fh.close()
    spool._seg_fh = open("/dev/full", "ab", buffering=0)  # the disk fills up
    spool.add(2, b"frame-2", 1)
    spool.ack([1], 1)
    spool.flush()  # the ack record cannot be written either
    assert spool.disk_errors >= 1 and "No space left on device" in caplog.text
    assert len(caplog.records) == 1, "logged once, not per frame"
    assert {e.seq: spool.data(e) for e in spool.all()} == {2: b"frame-2"}, "kept in memory"
    spool.add(3, b"frame-3", 1)  # a new segment on the real disk
    assert {e.seq: spool.data(e) for e in spool.all()} == {2: b"frame-2", 3: b"frame-3"}
    spool.close()
    again = Spool(clock=clock, directory=tmp_path, incarnation=2)
    # frame 2 was never on disk; frame 3 is; frame 1's ack never reached the disk,
    # but its segment, all acknowledged, went when the next one began
    assert sorted(e.seq for e in again.all()) == [3]


def test_a_segment_that_cannot_be_deleted_loses_nothing(tmp_path, clock, caplog, monkeypatch):
    """A disk remounted read-only: deleting an acknowledged segment fails (EROFS),
    the ack and the next frames are still taken, one line says why."""
    import errno
    from pathlib import Path

    spool = Spool(clock=clock, directory=tmp_path, incarnation=1)
    spool.add(1, b"frame-1", 1)

    def unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "unlink", unlink)
    spool._seg_fh.close()
    spool._seg_fh = open("/dev/full", "ab", buffering=0)
    assert spool.ack([1], 1) == 1
    spool.add(2, b"frame-2", 1)  # the write fails, the old segment cannot go: still kept
    assert {e.seq: spool.data(e) for e in spool.all()} == {2: b"frame-2"}
    assert "Read-only file system" in caplog.text
