"""``/api/v1/<op>``: a query op's arguments from a URL, its answer as JSON.

The op itself runs through the same ``OpTable`` as the ZeroMQ query socket, so
validation, roles and audit are the socket's. What is HTTP's own lives here: a
query string is text, so each argument is converted by its name (``since=1d``,
``states=up,down``); a JSON body (POST) is taken as is. Answers keep the
socket's shape, ``{ok, result}`` or ``{ok: false, error: {code, message}}``,
with the status an HTTP client expects. Reads that could grow without bound
(rows, points) are capped here, before the op runs.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any, Mapping

from clumon.root.config import TIERS
from clumon.root.ops import QueryError

#: rows an HTTP answer may hold (events, jobs, alerts ...)
MAX_ROWS = 5000
#: points one ``series`` answer may hold; a wider range needs a coarser tier
MAX_POINTS = 20000
#: the width of each tier's point, seconds (raw: agents sample at most once a second)
TIER_SECONDS = {"raw": 1.0, "1m": 60.0, "30m": 1800.0, "2h": 7200.0, "1d": 86400.0}

#: the HTTP status of each error code; any other code is 400 (a bad request)
STATUS = {"unknown_op": 404, "unknown_node": 404, "unknown_series": 404, "unknown_job": 404,
          "unknown_cluster": 404, "forbidden": 403, "unauthorized": 401, "timeout": 504,
          "internal": 500, "method": 405, "alerts_off": 409}

_TIME = {"since", "until"}
_NUMBER = {"step", "timeout", "max_age", "duration"}
_INT = {"limit", "top", "events", "id", "after"}
_LIST = {"states", "targets", "matchers"}
_BOOL = {"force", "reset"}
#: where an op reads a name differently from the rest
_PER_OP = {("job", "id"): str, ("latest", "series"): list, ("read", "series"): list}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def seconds(text: str) -> float:
    """``90``, ``1.5``, ``30s``, ``5m``, ``2h``, ``1d``, ``1w`` -> seconds; ValueError otherwise."""
    m = _DURATION.match(text.strip())
    if m:
        return float(m.group(1)) * _UNITS[m.group(2)]
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _one(op: str, name: str, text: str) -> Any:
    kind = _PER_OP.get((op, name))
    if kind is str:
        return text
    if kind is list or name in _LIST:
        return [t for t in text.split(",") if t]
    if name in _TIME:
        try:
            return seconds(text)
        except ValueError:
            raise QueryError("bad_args", f"argument '{name}': expected unix seconds or a duration "
                                         f"before now (30s, 5m, 2h, 1d, 1w), got {text!r}") from None
    if name in _NUMBER:
        try:
            return seconds(text)
        except ValueError:
            raise QueryError("bad_args", f"argument '{name}': expected a number, got {text!r}") from None
    if name in _INT:
        try:
            return int(text)
        except ValueError:
            raise QueryError("bad_args", f"argument '{name}': expected an integer, got {text!r}") from None
    if name in _BOOL:
        if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise QueryError("bad_args", f"argument '{name}': expected true or false, got {text!r}")
        return text.lower() in ("1", "true", "yes")
    return text


def args_from_query(op: str, query: Mapping[str, str]) -> dict:
    """A query string's arguments, typed by their names; a name given twice is a list."""
    out: dict[str, Any] = {}
    for name in set(query.keys()):
        values = query.getall(name) if hasattr(query, "getall") else [query[name]]
        if len(values) > 1:
            out[name] = [v for text in values for v in _one(op, name, text)] if (
                name in _LIST or _PER_OP.get((op, name)) is list) else [_one(op, name, t) for t in values]
        else:
            out[name] = _one(op, name, values[0])
    return out


def bound(op: str, args: dict) -> None:
    """Refuse what would answer an unbounded amount (``bad_args``, one line)."""
    limit = args.get("limit")
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > MAX_ROWS:
        raise QueryError("bad_args", f"argument 'limit': at most {MAX_ROWS} rows over HTTP, got {limit}")
    if op != "series":
        return
    now = time.time()

    def at(name: str, default: float) -> float | None:
        v = args.get(name, default)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            return None  # the op says what is wrong with it
        return float(v) if v >= 1e9 else now - float(v)

    since, until = at("since", 3600.0), at("until", 0.0)
    if since is None or until is None:
        return
    span = until - since
    if span <= 0:
        raise QueryError("bad_args", "argument 'until': the range is empty (until must be after since)")
    tier, step = args.get("tier"), args.get("step")
    if isinstance(tier, str) and tier in TIERS and span / TIER_SECONDS[tier] > MAX_POINTS:
        raise QueryError("bad_args", f"range too large for tier {tier!r}: {span / TIER_SECONDS[tier]:.0f} points, "
                                     f"at most {MAX_POINTS}; give a coarser tier, or none to have it chosen")
    if isinstance(step, (int, float)) and not isinstance(step, bool) and step > 0 and span / step > MAX_POINTS:
        raise QueryError("bad_args", f"argument 'step': {span / step:.0f} points, at most {MAX_POINTS}; "
                                     f"give a step of at least {math.ceil(span / MAX_POINTS)} s")


def _plain(v: Any) -> Any:
    """NaN and infinities as null: JSON has no spelling for them."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def dumps(reply: Any) -> bytes:
    """JSON bytes of a reply (the fast path first: most answers hold no NaN)."""
    try:
        return json.dumps(reply, allow_nan=False, separators=(",", ":"), default=repr).encode()
    except ValueError:
        return json.dumps(_plain(reply), allow_nan=False, separators=(",", ":"), default=repr).encode()


def error(code: str, message: str) -> tuple[int, dict]:
    """The status and body of an error answer."""
    return STATUS.get(code, 400), {"ok": False, "error": {"code": code, "message": message}}
