"""What executable plugins print: Prometheus text and Nagios output, good and garbage."""

from __future__ import annotations

import pytest

from clumon.agent.plugin_formats import GarbageOutput, looks_like_nagios, parse_nagios, parse_prometheus


def as_dict(samples):
    return {s.name: s.value for s in samples}


def test_prometheus_text_with_help_type_labels_and_timestamps():
    text = """# HELP job_queue_length Jobs waiting
# TYPE job_queue_length gauge
job_queue_length{queue="batch"} 42
job_queue_length{queue="gpu",partition="a \\"b\\""} 7 1700000000000
node_textfile_ok 1
weird_value NaN
inf_value +Inf
sci 1.5e3

"""
    got = as_dict(parse_prometheus(text))
    assert got == {'job_queue_length{queue="batch"}': 42.0,
                   'job_queue_length{queue="gpu",partition="a \\"b\\""}': 7.0,
                   "node_textfile_ok": 1.0, "weird_value": None, "inf_value": None, "sci": 1500.0}
    assert parse_prometheus("") == []


@pytest.mark.parametrize("text", [
    "hello world", "metric", "metric one", "1metric 2", 'm{a=b} 1', 'm{a="x" 1', "m 1 2 3",
    "\x00\xff\xfe garbage", "Traceback (most recent call last):",
])
def test_prometheus_garbage_names_the_line(text):
    with pytest.raises(GarbageOutput, match="line 1|not a number"):
        parse_prometheus(text)


def test_nagios_status_and_perfdata_in_base_units():
    text = "DISK WARNING - free space: / 3326 MB | /=2643MB;5948;5958;0;5968 time=15ms 'used pct'=85%;90;95 io=12c load=0.5\n"
    assert looks_like_nagios(text)
    got = as_dict(parse_nagios(text, 1, "check_disk"))
    assert got == {
        'nagios_status{plugin="check_disk"}': 1.0,
        'nagios_perfdata_bytes{plugin="check_disk",label="/"}': 2643e6,
        'nagios_perfdata_seconds{plugin="check_disk",label="time"}': pytest.approx(0.015),
        'nagios_perfdata_ratio{plugin="check_disk",label="used pct"}': pytest.approx(0.85),
        'nagios_perfdata_total{plugin="check_disk",label="io"}': 12.0,
        'nagios_perfdata{plugin="check_disk",label="load"}': 0.5,
    }
    assert as_dict(parse_nagios("OK - all fine\n", 0, "p")) == {'nagios_status{plugin="p"}': 0.0}
    long_output = "CRITICAL - bad | a=1\nmore text\nmore | b=2s\n"
    assert len(parse_nagios(long_output, 2, "p")) == 3


@pytest.mark.parametrize("text, code", [
    ("OK - fine | a=1parsecs", 0), ("OK - fine | =", 0), ("OK - fine", 4), ("no status here", 0),
])
def test_nagios_garbage(text, code):
    with pytest.raises(GarbageOutput):
        parse_nagios(text, code, "p")


def test_prometheus_text_is_not_taken_for_nagios():
    assert not looks_like_nagios('up{job="x"} 1\n')
    assert not looks_like_nagios("# HELP ok_total things that were OK\nok_total 3\n")
