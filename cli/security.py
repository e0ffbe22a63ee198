"""``clumon keys gen NAME`` (CurveZMQ key files), ``clumon keys token NAME`` (the
bearer token of a key, for the root's HTTP port) and ``clumon audit`` (who did
what: every mutating op and every refusal, from the root's ``audit`` and
``auth_refused`` events). The rotation steps are ``ROTATION`` (``clumon keys --help``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from clumon.cli import render as R
from clumon.cli.client import Client


ROTATION = """clumon keys gen NAME [--dir D] writes NAME.key (public) and NAME.key_secret (secret).
clumon keys token NAME [--dir D] [--append FILE] prints NAME's bearer token for the root's
HTTP port (derived from NAME.key_secret) and, with --append, adds 'NAME TOKEN' to the
root's http_tokens file. A rotated key has a new token: run it again and drop the old line.

Rotating a rack's keys without a gap (docs/ARCHITECTURE.md, "Security"):

1. ``clumon keys gen node-1 --dir new/`` for each node of the rack;
2. copy each ``node-1.key`` into the aggregator's ``authorized_keys`` as
   ``node-1.key.new``: the old and the new key are both node-1's now (the
   directory is read again within a second; no restart);
3. give each agent its new ``node-1.key_secret`` and restart it (its spool keeps
   what was not acknowledged and replays it);
4. move ``node-1.key.new`` over ``node-1.key``: the old key is refused from then
   on, live connections made with it included.
"""


def keys_gen(name: str, directory: str, as_json: bool) -> int:
    from clumon.proto.curve import KeyFileError, generate

    if not name or "/" in name or name.startswith("."):
        print(f"clumon keys gen: {name!r} is not a key name (a node's, an aggregator's or a client's name)",
              file=sys.stderr)
        return 2
    try:
        public, secret = generate(name, directory)
    except KeyFileError as exc:
        print(f"clumon keys gen: {exc}", file=sys.stderr)
        return 2
    if as_json:
        import json
        print(json.dumps({"public": str(public), "secret": str(secret)}))
    else:
        print(f"wrote {public} (public: give it to the parent's authorized_keys, or to clients as parent_key)")
        print(f"wrote {secret} (secret: this daemon's [curve] secret_key, or a client's --key; keep it private)")
    return 0


def keys_token(name: str, directory: str, append: str, as_json: bool) -> int:
    from clumon.proto.curve import SECRET_SUFFIX, KeyFileError, load_secret
    from clumon.root.httpauth import TokenFileError, derive_token, load_tokens

    path = Path(directory) / f"{name}{SECRET_SUFFIX}"
    try:
        _, secret = load_secret(path)
    except KeyFileError as exc:
        print(f"clumon keys token: {exc}", file=sys.stderr)
        return 2
    token = derive_token(secret)
    if append:
        try:
            known = load_tokens(append) if Path(append).exists() else {}
        except TokenFileError as exc:
            print(f"clumon keys token: {exc}", file=sys.stderr)
            return 2
        if known.get(token) != name:
            old = os.umask(0o077)
            try:
                with open(append, "a", encoding="utf-8") as f:
                    f.write(f"{name} {token}\n")
            finally:
                os.umask(old)
    if as_json:
        import json
        print(json.dumps({"name": name, "token": token, "appended_to": append or None}))
    else:
        print(token)
        if append:
            print(f"({name}'s token is in {append}; the root reads it again within a second)", file=sys.stderr)
    return 0


def cmd_audit(c: Client, a: argparse.Namespace) -> Any:
    result = c.call("audit", since=a.since, limit=a.limit)
    if not a.json:
        rows = []
        for e in result:
            attrs = e.get("attrs") or {}
            if e["type"] == "audit":
                rows.append([R.when(e["ts"]), attrs.get("who", e["subject"]), attrs.get("role", ""),
                             attrs.get("op", ""), ", ".join(attrs.get("targets") or []), attrs.get("outcome", "")])
            else:
                rows.append([R.when(e["ts"]), attrs.get("peer", e["subject"]), "", "(link)", attrs.get("node", ""),
                             e["message"]])
        R.table("audit", ["time", "who", "role", "op", "targets", "outcome"], rows)
    return result


def add_parsers(sub, common: argparse.ArgumentParser) -> dict:
    s = sub.add_parser("keys", parents=[common], help="CurveZMQ keys: gen NAME writes NAME.key and NAME.key_secret; "
                                                     "token NAME prints its HTTP bearer token",
                       description=ROTATION, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("action", choices=["gen", "token"])
    s.add_argument("name", help="the name the key speaks for (a node, an aggregator, the root or a client)")
    s.add_argument("--dir", default=".", help="where the two files are written / read (default: here)")
    s.add_argument("--append", default="", metavar="FILE",
                   help="token: add 'NAME TOKEN' to this file (the root's http_tokens)")
    s = sub.add_parser("audit", parents=[common], help="mutating ops and refusals: who, what, targets, outcome")
    s.add_argument("--since", type=R.duration, default=86400.0, help="how far back (default 1d)")
    s.add_argument("--limit", type=int, default=1000)
    return {"audit": cmd_audit}
