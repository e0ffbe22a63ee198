"""The log tailer against real temporary files: identity, rotation, odd lines.

Each case is a file system story (rename, truncation, deletion, inode reuse, a
directory that appears later, a binary line, a 10 MB line) told with real files;
the clock is passed in so the multiline flush and the rate limit need no sleeps.
"""

from __future__ import annotations

import os
import shutil

import pytest

from clumon.agent.logs import tailer as T
from clumon.agent.logs.config import LogConfig, LogRuleConfig
from clumon.agent.logs.reader import CUT_MARK
from clumon.agent.logs.rules import compile_rules
from clumon.proto import codec
from clumon.proto.frames import Log, make


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def tailer(tmp_path, *cfgs: LogConfig, rules=(), defaults=False, clock=None) -> T.Tailer:
    return T.Tailer(cfgs, compile_rules(tuple(rules), defaults), tmp_path / "state", clock=clock or Clock(),
                    scan_every=1)


def lines(result) -> list[str]:
    return [x for c in result.chunks for x in c.lines]


def append(path, text: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def ack_all(t: T.Tailer, result) -> None:
    for c, start in zip(result.chunks, result.starts):
        t.acked(c.fid, start, c.end)


def test_new_lines_only_whole_lines_with_offsets(tmp_path):
    log = tmp_path / "a.log"
    append(log, "one\ntwo\nthr")
    t = tailer(tmp_path, LogConfig(path=str(log)))
    r = t.poll()
    assert lines(r) == ["one", "two"]
    assert r.chunks[0].offsets == (0, 4) and r.chunks[0].end == 8
    append(log, "ee\n")
    r = t.poll()
    assert lines(r) == ["three"] and r.chunks[0].offsets == (8,)
    assert lines(t.poll()) == []


def test_rename_rotation_reads_the_old_file_to_its_end(tmp_path):
    log = tmp_path / "a.log"
    append(log, "1\n2\n")
    clock = Clock()
    t = tailer(tmp_path, LogConfig(path=str(log)), clock=clock)
    assert lines(t.poll()) == ["1", "2"]
    os.rename(log, tmp_path / "a.log.1")
    append(tmp_path / "a.log.1", "3 late\n")  # the writer had not reopened yet
    append(log, "4 new\n")
    r = t.poll()
    assert sorted(lines(r)) == ["3 late", "4 new"]
    assert len({c.fid for c in r.chunks}) == 2
    clock.t += 1.0
    append(tmp_path / "a.log.1", "5 later still\n")
    assert lines(t.poll()) == ["5 later still"]
    t.poll()
    clock.t += T.GONE_GRACE
    t.poll()
    assert len(t.files) == 1  # the old one, read to its end and quiet for GONE_GRACE, is let go


def test_copytruncate_continues_from_the_copy(tmp_path):
    log = tmp_path / "a.log"
    t = tailer(tmp_path, LogConfig(path=str(tmp_path / "a.log*")))
    append(log, "first\n")
    assert lines(t.poll()) == ["first"]
    append(log, "unread before the truncation\n")
    shutil.copyfile(log, tmp_path / "a.log.1")
    os.truncate(log, 0)
    append(log, "after\n")
    r = t.poll()
    assert sorted(lines(r)) == ["after", "unread before the truncation"]
    assert lines(t.poll()) == []


def test_truncation_to_a_shorter_file_is_noticed(tmp_path):
    log = tmp_path / "a.log"
    t = tailer(tmp_path, LogConfig(path=str(log)))
    append(log, "a long first line\nsecond\n")
    first = t.poll().chunks[0].fid
    os.truncate(log, 0)
    append(log, "x\n")
    r = t.poll()
    assert lines(r) == ["x"] and r.chunks[0].fid != first and r.chunks[0].offsets == (0,)


def test_deleted_file_is_read_to_its_end_then_let_go(tmp_path):
    log = tmp_path / "a.log"
    clock = Clock()
    t = tailer(tmp_path, LogConfig(path=str(log)), clock=clock)
    append(log, "1\n")
    assert lines(t.poll()) == ["1"]
    append(log, "2 written just before the deletion\n")
    os.unlink(log)
    assert lines(t.poll()) == ["2 written just before the deletion"]
    clock.t += T.GONE_GRACE
    t.poll()
    assert t.files == {}


def test_inode_reuse_with_another_first_line_is_a_new_file(tmp_path):
    """Same path and inode after a restart, other content: read from 0, not from the kept offset."""
    log = tmp_path / "a.log"
    append(log, "old first line\nold second line\n")
    t = tailer(tmp_path, LogConfig(path=str(log)))
    ack_all(t, t.poll())
    t.save()
    t.close()
    ino = os.stat(log).st_ino
    with open(log, "r+b") as f:  # same inode, new content longer than the kept offset
        f.truncate(0)
        f.write(b"a new file altogether, line 1\nline 2 of the new one\n")
    assert os.stat(log).st_ino == ino
    t2 = tailer(tmp_path, LogConfig(path=str(log)))
    r = t2.poll()
    assert lines(r) == ["a new file altogether, line 1", "line 2 of the new one"]
    assert r.chunks[0].offsets[0] == 0


def test_restart_resumes_after_the_last_acknowledged_line(tmp_path):
    log = tmp_path / "a.log"
    append(log, "1\n2\n")
    t = tailer(tmp_path, LogConfig(path=str(log)))
    ack_all(t, t.poll())
    append(log, "3\n4\n")
    r = t.poll()
    assert lines(r) == ["3", "4"]  # sent, never acknowledged
    t.save()
    t.close()  # as if killed: the unacknowledged lines come again
    t2 = tailer(tmp_path, LogConfig(path=str(log)))
    r2 = t2.poll()
    assert lines(r2) == ["3", "4"] and r2.chunks[0].fid == r.chunks[0].fid
    assert r2.chunks[0].offsets == r.chunks[0].offsets


def test_rotated_while_away_is_found_in_its_directory(tmp_path):
    log = tmp_path / "a.log"
    append(log, "1\n")
    t = tailer(tmp_path, LogConfig(path=str(log)))
    ack_all(t, t.poll())
    t.save()
    t.close()
    append(log, "2 unread\n")
    os.rename(log, tmp_path / "a.log.old")  # out of the glob while the agent was away
    append(log, "3 new\n")
    r = tailer(tmp_path, LogConfig(path=str(log))).poll()
    assert sorted(lines(r)) == ["2 unread", "3 new"]


def test_new_files_are_found_at_the_next_scan_and_a_moved_path_at_once(tmp_path):
    log = tmp_path / "a.log"
    append(log, "1\n")
    t = T.Tailer((LogConfig(path=str(tmp_path / "*.log")),), [], None, clock=Clock(), scan_every=3)
    assert lines(t.poll()) == ["1"]  # poll 0 reads the globs
    append(tmp_path / "b.log", "b\n")
    assert lines(t.poll()) == [] and lines(t.poll()) == []
    assert lines(t.poll()) == ["b"]  # poll 3 reads them again
    os.rename(log, tmp_path / "a.old")
    append(log, "new a\n")
    assert lines(t.poll()) == ["new a"]  # a path that leads elsewhere: at once


def test_compressed_rotations_are_not_read(tmp_path):
    append(tmp_path / "a.log", "plain\n")
    append(tmp_path / "a.log.2.gz", b"\x1f\x8b\x08\x00binary\n")
    assert lines(tailer(tmp_path, LogConfig(path=str(tmp_path / "a.log*"))).poll()) == ["plain"]


def test_a_poll_with_a_small_budget_says_there_is_more(tmp_path):
    log = tmp_path / "a.log"
    append(log, "".join(f"{i:09d}\n" for i in range(2000)))  # 20,000 bytes
    t = tailer(tmp_path, LogConfig(path=str(log)))
    r = t.poll(budget=5000)
    assert r.more and 0 < len(lines(r)) <= 500
    r2 = t.poll()
    assert not r2.more and lines(r) + lines(r2) == [f"{i:09d}" for i in range(2000)]


def test_a_directory_that_appears_later(tmp_path):
    d = tmp_path / "later" / "logs"
    t = tailer(tmp_path, LogConfig(path=str(d / "*.log")))
    assert lines(t.poll()) == []
    d.mkdir(parents=True)
    append(d / "x.log", "hello\n")
    append(d / "y.log", "world\n")
    assert sorted(lines(t.poll())) == ["hello", "world"]


def test_binary_line_is_kept_with_replacements_and_travels(tmp_path):
    log = tmp_path / "a.log"
    append(log, b"\x00\x01\xff\xfe binary \xc3\x28\n" + "ünïcode ok\n".encode())
    r = tailer(tmp_path, LogConfig(path=str(log))).poll()
    got = lines(r)
    assert got[0] == "\x00\x01\ufffd\ufffd binary \ufffd("
    assert got[1] == "ünïcode ok"
    frame = make("n1", 1, 0.0, Log(tuple(r.chunks)), 1)
    assert codec.decode(codec.encode(frame)).body.files[0].lines == tuple(got)


def test_ten_megabyte_line_is_cut_with_a_mark(tmp_path):
    log = tmp_path / "a.log"
    t = tailer(tmp_path, LogConfig(path=str(log), max_line_bytes=1000))
    big = 10 * 1024 * 1024
    append(log, "before\n")
    for _ in range(10):  # written over several polls, in 1 MiB pieces
        append(log, b"y" * (big // 10))
        t.poll()
    append(log, "\nafter\n")
    got = lines(t.poll())
    assert got[-1] == "after"
    assert got[0] == "y" * 1000 + CUT_MARK.format(n=big - 1000)
    again = tailer(tmp_path / "again", LogConfig(path=str(log), max_line_bytes=1000))  # the file as it is
    chunks = [c for _ in range(3) for c in again.poll().chunks]  # at most READ_PER_POLL a poll
    assert [x for c in chunks for x in c.lines] == ["before", "y" * 1000 + CUT_MARK.format(n=big - 1000), "after"]
    assert [o for c in chunks for o in c.offsets] == [0, 7, 7 + big + 1]
    assert len(codec.encode(make("n1", 1, 0.0, Log(tuple(chunks)), 1))) < 4096


def test_a_line_longer_than_one_read_at_the_largest_max_line_bytes(tmp_path):
    log = tmp_path / "a.log"
    n = T.READ_CHUNK + 5000
    append(log, b"z" * n + b"\nnext\n")
    t = tailer(tmp_path, LogConfig(path=str(log), max_line_bytes=T.READ_CHUNK))
    got = [x for _ in range(3) for x in lines(t.poll())]
    assert got == ["z" * T.READ_CHUNK + CUT_MARK.format(n=5000), "next"]


def test_multiline_records_and_the_flush_of_the_last(tmp_path):
    log = tmp_path / "a.log"
    clock = Clock()
    t = tailer(tmp_path, LogConfig(path=str(log), multiline_start=r"^\S"), clock=clock)
    append(log, "Traceback (most recent call last):\n  File x\n  File y\nValueError: no\nnext record\n")
    assert lines(t.poll()) == ["Traceback (most recent call last):\n  File x\n  File y", "ValueError: no"]
    assert lines(t.poll()) == []  # "next record" may go on
    clock.t += T.FLUSH_AFTER + 0.1
    assert lines(t.poll()) == ["next record"]


def test_a_multiline_record_that_never_ends_goes_cut(tmp_path):
    log = tmp_path / "a.log"
    t = tailer(tmp_path, LogConfig(path=str(log), multiline_start=r"^START", max_line_bytes=100))
    append(log, "START\n" + "".join(f"  more {i}\n" for i in range(100)))
    (rec,) = lines(t.poll())
    assert rec.startswith("START\n  more 0\n") and rec.endswith("bytes]") and len(rec) < 150


def test_include_exclude(tmp_path):
    log = tmp_path / "a.log"
    append(log, "keep error 1\nskip info\nkeep error debug\nkeep error 2\n")
    r = tailer(tmp_path, LogConfig(path=str(log), include="error", exclude="debug")).poll()
    assert lines(r) == ["keep error 1", "keep error 2"]
    assert r.chunks[0].end == os.path.getsize(log)


def test_rate_limit_holds_lines_back_counts_and_sends_them_later(tmp_path):
    log = tmp_path / "a.log"
    clock = Clock()
    t = tailer(tmp_path, LogConfig(path=str(log), rate_limit=10), clock=clock)
    append(log, "".join(f"{i}\n" for i in range(35)))
    got, events = [], []
    for _ in range(6):
        r = t.poll()
        got += lines(r)
        events += r.events
        assert len(lines(r)) <= 10
        clock.t += 1.0
    assert got == [str(i) for i in range(35)]  # none dropped, in order
    assert [e[0] for e in events] == ["log_rate_limited"]
    assert t.sources[0].held_episodes == 1


def test_the_rate_limit_holds_whatever_the_poll_interval(tmp_path):
    log = tmp_path / "a.log"
    clock = Clock()
    t = T.Tailer((LogConfig(path=str(log), rate_limit=10),), [], None, clock=clock, burst_s=2.0)
    append(log, "".join(f"{i}\n" for i in range(100)))
    counts = []
    for _ in range(4):
        counts.append(len(lines(t.poll())))
        clock.t += 2.0
    assert counts == [20, 20, 20, 20]  # 10 lines/s at a look every 2 s


def test_rules_count_once_across_a_restart(tmp_path):
    log = tmp_path / "a.log"
    rules = [LogRuleConfig("boom", "BOOM", "", True), LogRuleConfig("quiet", "hush", "", False)]
    t = tailer(tmp_path, LogConfig(path=str(log)), rules=rules, defaults=True)
    append(log, "a BOOM\nb\nc BOOM hush\nkernel: foo[1]: segfault at 7f ip 0 sp 0 error 4\n")
    r = t.poll()
    assert r.chunks[0].matches == ((0, "boom"), (2, "boom"), (3, "segfault"))
    assert t.counters == {("a", "boom"): 2, ("a", "quiet"): 1, ("a", "segfault"): 1}
    t.close()  # killed before any ack: the lines come again, the counts do not
    t2 = tailer(tmp_path, LogConfig(path=str(log)), rules=rules, defaults=True)
    r2 = t2.poll()
    assert r2.chunks[0].matches == r.chunks[0].matches  # the root makes the events, once
    assert t2.counters == t.counters


@pytest.mark.parametrize("fmt,regex,line,fields", [
    ("syslog", "", "<34>Oct 11 22:14:15 mymachine su[42]: 'su root' failed",
     {"time": "Oct 11 22:14:15", "host": "mymachine", "app": "su", "pid": "42", "msg": "'su root' failed",
      "facility": 4, "severity": "crit"}),
    ("syslog", "", "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 - An application event",
     {"time": "2003-10-11T22:14:15.003Z", "host": "mymachine.example.com", "app": "evntslog", "msgid": "ID47",
      "msg": "An application event", "facility": 20, "severity": "notice"}),
    ("json", "", '{"level": "error", "n": 3, "ctx": {"a": 1}}', {"level": "error", "n": 3, "ctx": '{"a": 1}'}),
    ("json", "", "not json", None),
    ("regex", r"(?P<level>[A-Z]+) (?P<msg>.*)", "ERROR disk full", {"level": "ERROR", "msg": "disk full"}),
])
def test_formats_give_fields(tmp_path, fmt, regex, line, fields):
    log = tmp_path / "a.log"
    append(log, line + "\n")
    r = tailer(tmp_path, LogConfig(path=str(log), format=fmt, regex=regex)).poll()
    assert r.chunks[0].lines == (line,)
    assert r.chunks[0].fields == (fields,)


def test_the_kept_position_moves_only_over_acknowledged_chunks_without_a_gap(tmp_path):
    log = tmp_path / "a.log"
    t = tailer(tmp_path, LogConfig(path=str(log)))
    append(log, "1\n")
    a = t.poll()
    append(log, "2\n")
    b = t.poll()
    ack_all(t, b)  # the later chunk first (a replay of the earlier one still to come)
    fid = a.chunks[0].fid
    assert t.by_fid[fid].acked == 0
    ack_all(t, a)
    assert t.by_fid[fid].acked == 4


def test_frames_the_spool_dropped_are_read_again_from_the_file(tmp_path):
    from clumon.agent.logs.watch import LogWatch

    log = tmp_path / "a.log"
    sent: list = []
    kept: set[int] = set()

    def send(body):
        sent.append(body)
        kept.add(len(sent))
        return len(sent)

    w = LogWatch((LogConfig(path=str(log)),), (), False, "n1", tmp_path, 1.0, send, lambda *a: None,
                 lambda e: None, holds=lambda seq: seq in kept, max_inflight_bytes=100)
    w.tailer.scan_every = 1
    append(log, "1\n2\n")
    r = w.tailer.poll()
    w._ship(r.chunks, r.starts)
    append(log, "3\n")
    r = w.tailer.poll()
    w._ship(r.chunks, r.starts)
    kept.discard(1)  # the spool dropped the first frame (overflow) before its ACK
    w.acked(((2, 2),))
    assert w.reread_lost() == 1
    r = w.tailer.poll()
    assert lines(r) == ["1", "2", "3"]  # read again; the root stores each line once
    w._ship(r.chunks, r.starts)
    w.acked(((3, 3),))
    assert w.tailer.by_fid[r.chunks[0].fid].acked == 6
    assert w._inflight_bytes == 0
