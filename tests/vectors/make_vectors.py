"""Write the golden wire-format vectors to ``frames.json``, once.

Run ``python tests/vectors/make_vectors.py`` only when the wire format changes on
purpose (a new PROTOCOL_VERSION). The committed file is the contract: the tests
compare ``decode``/``encode`` against its bytes and never regenerate them, so an
accidental change to the codec fails the tests instead of quietly moving the pins.
It refuses to overwrite an existing file without ``--force``.

``valid``: frames of every kind, as hex bytes and the decoded value (see
``canon.py``); ``canonical`` is false for input we accept but would not produce.
``malformed``: bytes that ``decode`` must refuse, with the error class expected
(``DecodeError``, or ``VersionError`` for an unknown protocol version) and, for
size checks, the ``max_frame_bytes`` to decode with.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import msgpack

from clumon.proto import codec
from clumon.proto.frames import (
    Ack,
    AckEntry,
    Batch,
    Control,
    Data,
    Event,
    Heartbeat,
    Hello,
    Kind,
    Log,
    LogFile,
    Reply,
    Request,
    make,
)

sys.path.insert(0, str(Path(__file__).parent))
from canon import frame_to_json  # noqa: E402

OUT = Path(__file__).with_name("frames.json")

SENDER = "node-1"
INC = 1_700_000_000_123_456_789
TS = 1_700_000_000.25
NAN = float("nan")

SERIES = (
    "node_load1",
    "node_load5",
    "node_memory_available_bytes",
    'node_filesystem_used_ratio{mount="/"}',
)
INVENTORY = {
    "host": "node-1",
    "cores": 64,
    "memory_bytes": 274_877_906_944,
    "kernel": "6.1.0-18-amd64",
    "boot_time": 1_699_990_000.0,
    "version": "0.1.0",
}


def enc(sender: str, body, seq: int | None = None, inc: int = INC, ts: float = TS) -> bytes:
    return codec.encode(make(sender, inc, ts, body, seq))


def valid_frames() -> dict[str, bytes]:
    dense = enc(SENDER, Data.from_values(1, [0.25, 0.5, None, 1.5e6]), 2)
    hb_other = enc("node-2", Heartbeat(0), inc=42)
    return {
        "hello": enc(SENDER, Hello(1, SERIES, INVENTORY, "agent"), 1),
        "hello_aggregator_empty_dictionary": enc("rack-1", Hello(0, (), {}, "aggregator"), 1),
        "data_dense": dense,
        "data_sparse_index": enc(SENDER, Data.from_values(1, [0.3, 0.72], [0, 3]), 3),
        "data_empty": enc(SENDER, Data.from_values(1, []), 4),
        "data_extremes": enc(SENDER, Data.from_values(7, [-0.0, 5e-324, 1.7976931348623157e308, None], [65535, 0, 1, 2]), 2**40),
        "event": enc(SENDER, Event("state", "node-7", "node-7 is down",
                                   {"old": "suspect", "new": "down", "last_heard": 1_699_999_990.5}), 5),
        "event_empty_message": enc("rack-1", Event("spool_overflow", "rack-1", "", {"dropped": 12}), 9),
        "batch": enc("rack-1", Batch((dense, hb_other))),
        "batch_empty": enc("rack-1", Batch(())),
        "heartbeat": enc(SENDER, Heartbeat(0)),
        "heartbeat_with_root": enc("root", Heartbeat(1_700_000_000_999_999_999)),
        "ack": enc("root", Ack((AckEntry(SENDER, INC, ((1, 3), (5, 5))), AckEntry("node-2", 42, ((10, 12),))))),
        "ack_empty": enc("root", Ack(())),
        "request": enc("root", Request("r-1", "read", ("node-1", "rack-2/*"),
                                       {"max_age": 2.0, "globs": ["node_load*"]}, 4.5)),
        "reply_ok": enc(SENDER, Reply("r-1", True, {"node-1": {"live": True, "values": {"node_load1": 0.25}}}, None)),
        "reply_error": enc(SENDER, Reply("r-2", False, None, {"code": "unknown_op", "message": "agent has no op 'x'"})),
        "control_resend_hello": enc("root", Control("resend_hello", SENDER, {})),
        "control_set_masks": enc("root", Control("set_masks", "rack-2/*",
                                                 {"masks": [[1, "node_cpu_*", "U"], [2, "node_disk_*", "B", 0.0, 0.9]]})),
        "log": enc(SENDER, Log((LOG_FILE,)), 11),
        "log_two_files_fields": enc(SENDER, Log((
            LogFile(7, "slurmd", "/var/log/slurm/slurmd.log", TS, 4096 + 31, (4096,), ("[2023] error: job 42 oom ☠",),
                    ({"level": "error", "job": "42"},), ((0, "oom_kill"),)),
            LogFile(2**62, "json", "/var/log/app.json", TS, 2, (0,), ("",), (None,), ()),
        )), 12),
        "log_empty": enc(SENDER, Log(()), 13),
    }


def pack(*fields) -> bytes:
    return msgpack.packb(list(fields), use_bin_type=True)


def hdr(kind: Kind, seq=None, *, version=1, sender=SENDER, inc=INC, ts=TS) -> list:
    return [version, int(kind), sender, inc, ts, seq]


def frame(kind: Kind, body, seq=None, **kw) -> bytes:
    return pack(*hdr(kind, seq, **kw), body)


def raw_heartbeat(sender: bytes) -> bytes:
    """A HEARTBEAT whose sender field is the given msgpack bytes, verbatim."""
    rest = [1, int(Kind.HEARTBEAT), sender, INC, TS, None, [0]]
    return b"\x97" + b"".join(x if isinstance(x, bytes) else msgpack.packb(x) for x in rest)


DATA_BODY = [1, Data.from_values(1, [1.0, 2.0]).values, None]
LOG_FILE = LogFile(3, "messages", "/var/log/messages", TS, 57,
                   (0, 28), ("Nov 14 22:13 n1 sshd[1]: ok", "Nov 14 22:13 n1 kernel: oops"), None, ((1, "kernel"),))
LOG_FILE_BODY = [3, "messages", "/var/log/messages", TS, 58, [0, 29], ["a", "b"], None, []]
HELLO_BODY = [1, list(SERIES), INVENTORY, "agent"]


def accepted_frames() -> dict[str, bytes]:
    """Valid, but not what ``encode`` writes (other encoders may produce these)."""
    return {
        # some msgpack libraries (JavaScript's) pack an integral float as an int
        "ts_as_int": frame(Kind.HEARTBEAT, [0], ts=1_700_000_000),
        "request_timeout_as_int": frame(Kind.REQUEST, ["r-9", "latest", ["node-1"], {}, 5]),
        # a str8 header for a 3-byte name where fixstr would do
        "sender_as_str8": raw_heartbeat(b"\xd9\x03abc"),
    }


def malformed_frames(valid: dict[str, bytes]) -> list[tuple[str, bytes, str, str, int | None]]:
    """(name, bytes, expected error, why, max_frame_bytes or None)."""
    D, V = "DecodeError", "VersionError"
    hello = valid["hello"]
    out = [
        # -- not a frame at all
        ("empty_input", b"", D, "no bytes", None),
        ("never_used_byte", b"\xc1", D, "0xc1 is reserved in msgpack", None),
        ("plain_text", b"GET / HTTP/1.1\r\n\r\n", D, "an HTTP client on the wrong port", None),
        ("truncated", hello[:-3], D, "a HELLO cut short", None),
        ("truncated_header_only", hello[:5], D, "a HELLO cut after the header", None),
        ("trailing_bytes", valid["heartbeat"] + b"\x00", D, "extra data after the frame", None),
        ("huge_array_header", b"\xdd\xff\xff\xff\xff\x01", D, "claims 4G elements", None),
        ("not_an_array", msgpack.packb({"kind": 2}), D, "a map, not an array", None),
        ("empty_array", pack(), D, "no fields", None),
        ("scalar", msgpack.packb(1), D, "just the version", None),
        ("too_deep", b"\x91" * 5000 + b"\xc0", D, "nesting beyond the unpacker's stack", None),
        ("invalid_utf8_sender", raw_heartbeat(b"\xa2\xff\xfe"), D, "sender is not UTF-8", None),
        # -- version and kind
        ("unknown_version_2", frame(Kind.HEARTBEAT, [0], version=2), V, "a newer protocol", None),
        ("unknown_version_0", frame(Kind.HEARTBEAT, [0], version=0), V, "version 0 was never used", None),
        ("version_as_string", frame(Kind.HEARTBEAT, [0], version="1"), V, "version must be an int", None),
        ("version_as_bool", frame(Kind.HEARTBEAT, [0], version=True), V, "true is not 1", None),
        ("version_as_float", frame(Kind.HEARTBEAT, [0], version=1.0), V, "1.0 is not 1", None),
        ("version_only", pack(2), V, "the version is checked before the field count", None),
        ("unknown_kind_0", pack(1, 0, SENDER, INC, TS, None, [0]), D, "kind 0 is not assigned", None),
        ("unknown_kind_10", pack(1, 10, SENDER, INC, TS, None, [0]), D, "kind 10 is not assigned", None),
        ("kind_as_name", pack(1, "DATA", SENDER, INC, TS, 1, DATA_BODY), D, "kind by name, not number", None),
        ("six_fields", pack(*hdr(Kind.HEARTBEAT)), D, "body missing", None),
        ("eight_fields", pack(*hdr(Kind.HEARTBEAT), [0], "extra"), D, "an extra field", None),
        # -- header fields
        ("sender_empty", frame(Kind.HEARTBEAT, [0], sender=""), D, "empty sender", None),
        ("sender_int", frame(Kind.HEARTBEAT, [0], sender=7), D, "sender must be a string", None),
        ("sender_bytes", frame(Kind.HEARTBEAT, [0], sender=b"node-1"), D, "sender as bin, not str", None),
        ("sender_too_long", frame(Kind.HEARTBEAT, [0], sender="n" * 256), D, "sender over 255 characters", None),
        ("incarnation_negative", frame(Kind.HEARTBEAT, [0], inc=-1), D, "incarnation below 0", None),
        ("incarnation_float", frame(Kind.HEARTBEAT, [0], inc=1.5), D, "incarnation must be an int", None),
        ("incarnation_bool", frame(Kind.HEARTBEAT, [0], inc=True), D, "bool is not an int", None),
        ("incarnation_uint64_max", frame(Kind.HEARTBEAT, [0], inc=2**64 - 1), D, "beyond int64", None),
        ("ts_nan", frame(Kind.HEARTBEAT, [0], ts=NAN), D, "NaN timestamp", None),
        ("ts_inf", frame(Kind.HEARTBEAT, [0], ts=float("inf")), D, "infinite timestamp", None),
        ("ts_string", frame(Kind.HEARTBEAT, [0], ts="2023-11-14T22:13:20Z"), D, "ts must be a number", None),
        ("ts_nil", frame(Kind.HEARTBEAT, [0], ts=None), D, "ts missing", None),
        ("seq_on_heartbeat", frame(Kind.HEARTBEAT, [0], 5), D, "only stored kinds carry a seq", None),
        ("seq_on_ack", frame(Kind.ACK, [], 0), D, "only stored kinds carry a seq (even 0)", None),
        ("no_seq_on_data", frame(Kind.DATA, DATA_BODY, None), D, "DATA must carry a seq", None),
        ("no_seq_on_hello", frame(Kind.HELLO, HELLO_BODY, None), D, "HELLO must carry a seq", None),
        ("no_seq_on_event", frame(Kind.EVENT, ["state", "node-7", "", {}], None), D, "EVENT must carry a seq", None),
        ("seq_negative", frame(Kind.DATA, DATA_BODY, -1), D, "seq below 0", None),
        ("seq_float", frame(Kind.DATA, DATA_BODY, 2.0), D, "seq must be an int", None),
        # -- size, checked before unpacking
        ("oversized", valid["hello"], D, "one byte over max_frame_bytes", len(valid["hello"]) - 1),
        # -- HELLO body
        ("hello_body_missing_role", frame(Kind.HELLO, HELLO_BODY[:3], 1), D, "3 of 4 fields", None),
        ("hello_body_map", frame(Kind.HELLO, {"dict_version": 1}, 1), D, "body as a map", None),
        ("hello_series_not_list", frame(Kind.HELLO, [1, "node_load1", {}, "agent"], 1), D, "series as a string", None),
        ("hello_series_name_int", frame(Kind.HELLO, [1, ["node_load1", 5], {}, "agent"], 1), D, "a series name is an int", None),
        ("hello_series_name_empty", frame(Kind.HELLO, [1, [""], {}, "agent"], 1), D, "an empty series name", None),
        ("hello_dict_version_negative", frame(Kind.HELLO, [-1, [], {}, "agent"], 1), D, "dict_version below 0", None),
        ("hello_inventory_list", frame(Kind.HELLO, [1, [], [], "agent"], 1), D, "inventory must be a map", None),
        ("hello_inventory_int_key", frame(Kind.HELLO, [1, [], {5: "x"}, "agent"], 1), D, "inventory key is an int", None),
        ("hello_inventory_bytes_key", frame(Kind.HELLO, [1, [], {b"host": "x"}, "agent"], 1), D, "inventory key is bin", None),
        ("hello_inventory_nested_bytes_key", frame(Kind.HELLO, [1, [], {"disks": {b"sda": 1}}, "agent"], 1), D,
         "a nested map key is bin", None),
        ("hello_inventory_ext_type", frame(Kind.HELLO, [1, [], {"x": msgpack.ExtType(5, b"ab")}, "agent"], 1), D,
         "msgpack extension types are not part of the protocol", None),
        ("hello_inventory_timestamp", frame(Kind.HELLO, [1, [], {"boot": msgpack.Timestamp(1_699_990_000)}, "agent"], 1),
         D, "msgpack timestamps are not part of the protocol", None),
        ("hello_role_int", frame(Kind.HELLO, [1, [], {}, 1], 1), D, "role must be a string", None),
        # -- DATA body
        ("data_values_list", frame(Kind.DATA, [1, [1.0, 2.0], None], 1), D, "values as an array, not float64 bytes", None),
        ("data_values_not_multiple_of_8", frame(Kind.DATA, [1, b"\x00" * 12, None], 1), D, "12 bytes of values", None),
        ("data_index_length_mismatch", frame(Kind.DATA, [1, DATA_BODY[1], b"\x00\x00"], 1), D,
         "2 values, 1 index entry", None),
        ("data_index_longer", frame(Kind.DATA, [1, DATA_BODY[1], b"\x00\x00" * 3], 1), D, "2 values, 3 index entries", None),
        ("data_index_list", frame(Kind.DATA, [1, DATA_BODY[1], [0, 1]], 1), D, "index as an array, not uint16 bytes", None),
        ("data_dict_version_string", frame(Kind.DATA, ["1", DATA_BODY[1], None], 1), D, "dict_version as a string", None),
        ("data_missing_index_field", frame(Kind.DATA, DATA_BODY[:2], 1), D, "2 of 3 fields", None),
        ("data_values_as_str", frame(Kind.DATA, [1, "\x00" * 8, None], 1), D, "values as str, not bin", None),
        # -- EVENT body
        ("event_missing_attrs", frame(Kind.EVENT, ["state", "node-7", "down"], 1), D, "3 of 4 fields", None),
        ("event_type_empty", frame(Kind.EVENT, ["", "node-7", "", {}], 1), D, "empty event type", None),
        ("event_attrs_nil", frame(Kind.EVENT, ["state", "node-7", "", None], 1), D, "attrs must be a map", None),
        # -- BATCH body
        ("batch_item_str", frame(Kind.BATCH, ["not bytes"]), D, "inner frames are bin", None),
        ("batch_body_bytes", frame(Kind.BATCH, b"\x90"), D, "body must be an array", None),
        # -- HEARTBEAT body
        ("heartbeat_empty_body", frame(Kind.HEARTBEAT, []), D, "root incarnation missing", None),
        ("heartbeat_root_negative", frame(Kind.HEARTBEAT, [-5]), D, "root incarnation below 0", None),
        ("heartbeat_body_int", frame(Kind.HEARTBEAT, 0), D, "body must be an array", None),
        # -- ACK body
        ("ack_odd_ranges", frame(Kind.ACK, [[SENDER, INC, [1, 2, 3]]]), D, "ranges come in pairs", None),
        ("ack_range_reversed", frame(Kind.ACK, [[SENDER, INC, [5, 3]]]), D, "lo > hi", None),
        ("ack_node_int", frame(Kind.ACK, [[7, INC, [1, 1]]]), D, "node must be a string", None),
        ("ack_seq_negative", frame(Kind.ACK, [[SENDER, INC, [-1, 1]]]), D, "seq below 0", None),
        ("ack_entry_short", frame(Kind.ACK, [[SENDER, INC]]), D, "2 of 3 entry fields", None),
        # -- REQUEST body
        ("request_timeout_negative", frame(Kind.REQUEST, ["r-1", "read", ["node-1"], {}, -1.0]), D, "negative timeout", None),
        ("request_timeout_nan", frame(Kind.REQUEST, ["r-1", "read", ["node-1"], {}, NAN]), D, "NaN timeout", None),
        ("request_targets_str", frame(Kind.REQUEST, ["r-1", "read", "node-1", {}, 1.0]), D, "targets must be an array", None),
        ("request_args_list", frame(Kind.REQUEST, ["r-1", "read", ["node-1"], [], 1.0]), D, "args must be a map", None),
        ("request_op_empty", frame(Kind.REQUEST, ["r-1", "", ["node-1"], {}, 1.0]), D, "empty op", None),
        # -- REPLY body
        ("reply_ok_int", frame(Kind.REPLY, ["r-1", 1, None, None]), D, "ok must be a bool", None),
        ("reply_error_str", frame(Kind.REPLY, ["r-1", False, None, "boom"]), D, "error must be a map", None),
        ("reply_result_timestamp", frame(Kind.REPLY, ["r-1", True, [msgpack.Timestamp(1)], None]), D,
         "msgpack timestamps are not part of the protocol", None),
        # -- CONTROL body
        ("control_args_list", frame(Kind.CONTROL, ["set_masks", "node-1", []]), D, "args must be a map", None),
        ("control_target_nil", frame(Kind.CONTROL, ["resend_hello", None, {}]), D, "target missing", None),
        # -- LOG body
        ("log_without_seq", frame(Kind.LOG, [1, [LOG_FILE_BODY]]), D, "LOG is stored: it needs a seq", None),
        ("log_unknown_layout", frame(Kind.LOG, [2, [LOG_FILE_BODY]], 1), D, "a LOG layout this build cannot read", None),
        ("log_offsets_short", frame(Kind.LOG, [1, [[*LOG_FILE_BODY[:5], [0], ["a", "b"], None, []]]], 1), D,
         "one offset per line", None),
        ("log_offsets_backwards", frame(Kind.LOG, [1, [[*LOG_FILE_BODY[:5], [29, 0], ["a", "b"], None, []]]], 1), D,
         "offsets increase", None),
        ("log_end_before_last", frame(Kind.LOG, [1, [[*LOG_FILE_BODY[:4], 29, [0, 29], ["a", "b"], None, []]]], 1), D,
         "end after the last line", None),
        ("log_line_bytes", frame(Kind.LOG, [1, [[*LOG_FILE_BODY[:6], ["a", b"b"], None, []]]], 1), D,
         "lines are text", None),
        ("log_match_out_of_range", frame(Kind.LOG, [1, [[*LOG_FILE_BODY[:8], [[2, "oom"]]]]], 1), D,
         "a match names a line of the file", None),
        ("log_fields_not_map", frame(Kind.LOG, [1, [[*LOG_FILE_BODY[:7], [1, None], []]]], 1), D,
         "fields are maps", None),
    ]
    return out


def build() -> dict:
    valid = valid_frames()
    doc = {
        "about": "Golden vectors of the Clumon+ wire format; written once by make_vectors.py. Do not edit by hand.",
        "protocol_version": 1,
        "valid": [],
        "malformed": [],
    }
    for name, data in valid.items():
        doc["valid"].append({"name": name, "hex": data.hex(), "canonical": True,
                             "value": frame_to_json(codec.decode(data))})
    for name, data in accepted_frames().items():
        f = codec.decode(data)
        assert codec.encode(f) != data, name
        doc["valid"].append({"name": name, "hex": data.hex(), "canonical": False, "value": frame_to_json(f)})
    for name, data, error, why, limit in malformed_frames(valid):
        case = {"name": name, "hex": data.hex(), "error": error, "why": why}
        if limit is not None:
            case["max_frame_bytes"] = limit
        try:
            codec.decode(data, limit or codec.MAX_FRAME_BYTES)
        except codec.DecodeError as exc:
            assert type(exc).__name__ == error, (name, exc)
        else:
            raise AssertionError(f"{name}: decoded, expected {error}")
        doc["malformed"].append(case)
    names = [c["name"] for c in doc["valid"] + doc["malformed"]]
    assert len(names) == len(set(names)), "duplicate vector names"
    return doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="overwrite the committed vectors (a deliberate format change)")
    args = ap.parse_args()
    if OUT.exists() and not args.force:
        print(f"{OUT} exists; the committed vectors are the contract. Use --force for a deliberate change.",
              file=sys.stderr)
        return 1
    doc = build()
    OUT.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    print(f"wrote {len(doc['valid'])} valid and {len(doc['malformed'])} malformed vectors to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
