"""The root's SQL schema (SQLAlchemy Core) and its versioned upgrades.

Tables
------
``frames``         one row per stored frame (HELLO, DATA, EVENT) with its original
                   bytes; the unique key ``(node, incarnation, seq)`` makes a replayed
                   frame a no-op (``INSERT ... ON CONFLICT DO NOTHING``).
``dictionaries``   each HELLO's series dictionary, keyed by
                   ``(node, incarnation, dict_version)``.
``events``         decoded EVENT frames, keyed by the frame that carried them.
``nodes``          the live view: one row per node, upserted by name.
``state_history``  one row per node state period ``(node, since, state)``; written
                   with the node upsert, so it needs no read and no event naming.
``schema_version`` which migrations have run.
``jobs``           (version 5) one row per batch job, from ``sched_jobs`` EVENTs.
``alerts``         (version 6) one row per life of an alert; ``silences``.
``log_chunks``     (version 7) log lines, zstd-compressed, by node, source and hour;
``log_files``      what of each file generation is stored (the lines' dedupe key).

Version 2 adds ``chunks`` (compacted per-series points, format in ``chunks.py``),
``compacted`` (seq ranges already compacted, for idempotence after deletion),
``rollup_keys`` and one table per tier ``rollup_1m`` ... ``rollup_1d`` with a
``rollup_<tier>_named`` view that joins the names in. Version 3 keys ``chunks``
by the node-scope id of ``rollup_keys`` instead of node and series names (view
``chunks_named``).

Why a migration table and not Alembic: the schema belongs to one program, which
creates and upgrades it at start; migrations are a short ordered list of Python
functions taking a ``Connection``. Alembic's strengths (autogenerate, branches,
downgrades, offline SQL scripts) would bring a second configuration tree
(``alembic.ini``, ``env.py``) and a dependency for none of that. The table records
every version applied and when, so an operator can read it with ``sqlite3``/``psql``.
"""

from __future__ import annotations

import time
from typing import Callable

import sqlalchemy as sa

metadata = sa.MetaData()

frames = sa.Table(
    "frames",
    metadata,
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("incarnation", sa.BigInteger, nullable=False),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("ts", sa.Float(precision=53), nullable=False),
    sa.Column("kind", sa.SmallInteger, nullable=False),
    sa.Column("dict_version", sa.Integer, nullable=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("node", "incarnation", "seq", name="frames_pk"),
    sa.Index("frames_node_ts", "node", "ts"),
)

dictionaries = sa.Table(
    "dictionaries",
    metadata,
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("incarnation", sa.BigInteger, nullable=False),
    sa.Column("dict_version", sa.Integer, nullable=False),
    sa.Column("series", sa.JSON, nullable=False),
    sa.Column("inventory", sa.JSON, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.PrimaryKeyConstraint("node", "incarnation", "dict_version", name="dictionaries_pk"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("ts", sa.Float(precision=53), nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("type", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("attrs", sa.JSON, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_incarnation", sa.BigInteger, nullable=False),
    sa.Column("source_seq", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("source", "source_incarnation", "source_seq", name="events_pk"),
    sa.Index("events_ts", "ts"),
    sa.Index("events_subject_ts", "subject", "ts"),
)

nodes = sa.Table(
    "nodes",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("parent", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("since", sa.Float(precision=53), nullable=False),
    sa.Column("incarnation", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.Float(precision=53), nullable=False),
    sa.Column("inventory", sa.JSON, nullable=False),
)

state_history = sa.Table(
    "state_history",
    metadata,
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("since", sa.Float(precision=53), nullable=False),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("incarnation", sa.BigInteger, nullable=False),
    sa.PrimaryKeyConstraint("node", "since", "state", name="state_history_pk"),
)

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("applied_at", sa.Float(precision=53), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
)

#: Tables of version 1, in creation order.
V1_TABLES = (frames, dictionaries, events, nodes, state_history)

# --- version 2: compaction, rollups -------------------------------------------

# The layout of ``chunks`` that migration 2 created; migration 3 replaces it.
_legacy = sa.MetaData()
_chunks_v2 = sa.Table(
    "chunks",
    _legacy,
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("series", sa.Text, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("first_ts", sa.Float(precision=53), nullable=False),
    sa.Column("last_ts", sa.Float(precision=53), nullable=False),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("node", "series", "start", name="chunks_pk"),
)

# Seq ranges of frames that were compacted (and deleted): a replay of one of
# them must still be recognised as already stored.
compacted = sa.Table(
    "compacted",
    metadata,
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("incarnation", sa.BigInteger, nullable=False),
    sa.Column("lo", sa.BigInteger, nullable=False),
    sa.Column("hi", sa.BigInteger, nullable=False),
    sa.Column("last_ts", sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint("node", "incarnation", "lo", name="compacted_pk"),
)

rollup_keys = sa.Table(
    "rollup_keys",
    metadata,
    sa.Column("key", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("scope", sa.Text, nullable=False),  # node | aggregator | cluster
    sa.Column("entity", sa.Text, nullable=False),  # node or aggregator name; "" for cluster
    sa.Column("series", sa.Text, nullable=False),
    sa.UniqueConstraint("scope", "entity", "series", name="rollup_keys_name"),
    sa.Index("rollup_keys_series", "series", "scope"),
)


def _rollup_table(tier: str) -> sa.Table:
    return sa.Table(
        f"rollup_{tier}",
        metadata,
        sa.Column("key", sa.BigInteger, nullable=False),
        sa.Column("bucket", sa.BigInteger, nullable=False),  # bucket start, epoch seconds
        sa.Column("min", sa.Float(precision=53), nullable=False),
        sa.Column("max", sa.Float(precision=53), nullable=False),
        sa.Column("sum", sa.Float(precision=53), nullable=False),
        sa.Column("sum_c", sa.Float(precision=53), nullable=False),  # exact sum = sum + sum_c
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("key", "bucket", name=f"rollup_{tier}_pk"),
        sa.Index(f"rollup_{tier}_bucket", "bucket"),
    )


TIER_NAMES = ("1m", "30m", "2h", "1d")
rollups = {tier: _rollup_table(tier) for tier in TIER_NAMES}
V2_TABLES = (compacted, rollup_keys, *rollups.values())

# --- version 3: chunks keyed by the (node, series) id of rollup_keys ------------------
#
# A chunk row named its node and series as text, and the primary key index
# repeated both: ~200 bytes a row, as much as a chunk of a rarely sent series
# itself. An integer key (the node-scope id in rollup_keys) leaves ~100 with
# both indexes. (SQLite's WITHOUT ROWID, which would drop one copy of the key,
# measured worse: rows of ~1 KB blobs fill its B-tree pages badly.)

chunks = sa.Table(
    "chunks",
    metadata,
    sa.Column("key", sa.BigInteger, nullable=False),  # rollup_keys.key of scope "node"
    sa.Column("start", sa.BigInteger, nullable=False),  # window start, epoch seconds
    sa.Column("first_ts", sa.Float(precision=53), nullable=False),
    sa.Column("last_ts", sa.Float(precision=53), nullable=False),
    sa.Column("points", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),  # root/storage/chunks.py format
    sa.PrimaryKeyConstraint("key", "start", name="chunks_key_pk"),
    sa.Index("chunks_start", "start"),
)
V3_TABLES = (chunks,)

# --- version 5: batch jobs ---------------------------------------------------------
#
# One row per job of a batch scheduler, upserted from the ``sched_jobs`` EVENTs of
# the scheduler source (root/storage/jobs.py) and kept after the job ends.
# ``last_seen`` is the poll that last spoke of it: a replayed, older event never
# overwrites a newer one.

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("cluster", sa.Text, nullable=False),
    sa.Column("id", sa.Text, nullable=False),
    sa.Column("user", sa.Text, nullable=False),
    sa.Column("account", sa.Text, nullable=False),
    sa.Column("partition", sa.Text, nullable=False),  # comma-separated when several
    sa.Column("state", sa.Text, nullable=False),  # running | pending | suspended | finished
    sa.Column("raw_state", sa.Text, nullable=False),  # the scheduler's word (COMPLETED, GONE ...)
    sa.Column("nodes", sa.Text, nullable=False),  # comma-separated node names
    sa.Column("cores", sa.Integer, nullable=False),
    sa.Column("submit_time", sa.Float(precision=53), nullable=True),
    sa.Column("start_time", sa.Float(precision=53), nullable=True),
    sa.Column("end_time", sa.Float(precision=53), nullable=True),
    sa.Column("first_seen", sa.Float(precision=53), nullable=False),
    sa.Column("last_seen", sa.Float(precision=53), nullable=False),
    sa.Column("source", sa.Text, nullable=False),  # the node whose source reported it
    sa.PrimaryKeyConstraint("cluster", "id", name="jobs_pk"),
    sa.Index("jobs_user", "user", "start_time"),
    sa.Index("jobs_account", "account", "start_time"),
    sa.Index("jobs_start", "start_time"),
    sa.Index("jobs_open", "cluster", "state"),
)
V5_TABLES = (jobs,)

# --- version 6: alerts ---------------------------------------------------------------
#
# One row per life of an alert (its fingerprint and when its condition started to
# hold), rewritten as it goes pending -> firing -> resolved and as it is told; and
# the silences. A restarted root reads the open alerts back, so it neither forgets
# what fires nor tells it twice (root/alerts/).

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("started", sa.Float(precision=53), nullable=False),
    sa.Column("rule", sa.Text, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("annotations", sa.JSON, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # pending | firing | resolved
    sa.Column("fired_at", sa.Float(precision=53), nullable=True),
    sa.Column("resolved_at", sa.Float(precision=53), nullable=True),
    sa.Column("value", sa.Float(precision=53), nullable=True),
    sa.Column("notified", sa.Text, nullable=True),  # the status last told: firing | resolved
    sa.Column("notified_at", sa.Float(precision=53), nullable=True),
    sa.Column("notifications", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("fingerprint", "started", name="alerts_pk"),
    sa.Index("alerts_state", "state"),
    sa.Index("alerts_started", "started"),
)

silences = sa.Table(
    "silences",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("matchers", sa.JSON, nullable=False),
    sa.Column("starts", sa.Float(precision=53), nullable=False),
    sa.Column("ends", sa.Float(precision=53), nullable=False),
    sa.Column("created_by", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)
V6_TABLES = (alerts, silences)

# Version 7: log lines (root/storage/logs.py). Lines are kept zstd-compressed in
# chunks, one per commit and (node, source, hour window); a search narrows by
# window and node through the index before it decompresses anything.
log_chunks = sa.Table(
    "log_chunks",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("start", sa.Float(precision=53), nullable=False),
    sa.Column("first_ts", sa.Float(precision=53), nullable=False),
    sa.Column("last_ts", sa.Float(precision=53), nullable=False),
    sa.Column("lines", sa.Integer, nullable=False),
    sa.Column("data", sa.LargeBinary, nullable=False),
    sa.Index("log_chunks_start_node", "start", "node"),
    sa.Index("log_chunks_node_start", "node", "start"),
)
# What of each file generation is stored: [[first offset, end], ...] merged. A
# line whose offset lies in a range is there already (a replay, a re-read after
# the agent was killed) and is not stored again.
log_files = sa.Table(
    "log_files",
    metadata,
    sa.Column("node", sa.Text, nullable=False),
    sa.Column("fid", sa.BigInteger, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("ranges", sa.JSON, nullable=False),
    sa.Column("last_ts", sa.Float(precision=53), nullable=False),
    sa.PrimaryKeyConstraint("node", "fid", name="log_files_pk"),
    sa.Index("log_files_last_ts", "last_ts"),
)
V7_TABLES = (log_chunks, log_files)
ALL_TABLES = V1_TABLES + V2_TABLES + V3_TABLES + V5_TABLES + V6_TABLES + V7_TABLES


def _v1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=list(V1_TABLES), checkfirst=True)


def _v2(conn: sa.Connection) -> None:
    _chunks_v2.create(conn, checkfirst=True)
    metadata.create_all(conn, tables=list(V2_TABLES), checkfirst=True)
    for tier in TIER_NAMES:
        # The same rows with names, for people at sqlite3/psql.
        conn.exec_driver_sql(
            f'CREATE VIEW "rollup_{tier}_named" AS SELECT k.scope, k.entity, k.series, r.bucket, '
            f"r.min, r.max, r.sum + r.sum_c AS sum, r.count FROM \"rollup_{tier}\" r "
            f"JOIN rollup_keys k ON k.key = r.key"
        )


def _v3(conn: sa.Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE chunks RENAME TO chunks_v2")
    chunks.create(conn)
    # Every (node, series) of a stored chunk gets a node-scope key if it has none.
    missing = conn.exec_driver_sql(
        "SELECT DISTINCT c.node, c.series FROM chunks_v2 c WHERE NOT EXISTS (SELECT 1 FROM rollup_keys k "
        "WHERE k.scope = 'node' AND k.entity = c.node AND k.series = c.series) ORDER BY c.node, c.series"
    ).all()
    if missing:
        top = conn.execute(sa.select(sa.func.coalesce(sa.func.max(rollup_keys.c.key), -1))).scalar_one()
        conn.execute(rollup_keys.insert(), [
            {"key": top + 1 + i, "scope": "node", "entity": node, "series": series}
            for i, (node, series) in enumerate(missing)
        ])
    conn.exec_driver_sql(
        "INSERT INTO chunks (key, start, first_ts, last_ts, points, data) "
        "SELECT k.key, c.start, c.first_ts, c.last_ts, c.points, c.data FROM chunks_v2 c "
        "JOIN rollup_keys k ON k.scope = 'node' AND k.entity = c.node AND k.series = c.series"
    )
    conn.exec_driver_sql("DROP TABLE chunks_v2")
    # The same rows with names, for people at sqlite3/psql.
    conn.exec_driver_sql(
        "CREATE VIEW chunks_named AS SELECT k.entity AS node, k.series, c.start, c.first_ts, c.last_ts, "
        "c.points, c.data FROM chunks c JOIN rollup_keys k ON k.key = c.key"
    )


def _v4(conn: sa.Connection) -> None:
    # PostgreSQL: retention's index on chunks.start as BRIN (a few pages for the
    # whole table: chunks are written roughly in window order) instead of a
    # B-tree entry of ~20 bytes a row -- 0.05 B/sample where chunks of change-
    # suppressed series hold ~450 points. SQLite has no BRIN.
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP INDEX chunks_start")
        conn.exec_driver_sql("CREATE INDEX chunks_start ON chunks USING brin (start)")


def _v5(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=list(V5_TABLES), checkfirst=True)


def _v6(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=list(V6_TABLES), checkfirst=True)


def _v7(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=list(V7_TABLES), checkfirst=True)


Migration = tuple[int, str, Callable[[sa.Connection], None]]

#: Ordered migrations. Append; never edit one that has shipped.
MIGRATIONS: list[Migration] = [
    (1, "frames, dictionaries, events, nodes, state_history", _v1),
    (2, "chunks, compacted ranges, rollup keys and tiers", _v2),
    (3, "chunks keyed by rollup_keys.key (node scope), view chunks_named", _v3),
    (4, "PostgreSQL: BRIN index on chunks.start", _v4),
    (5, "jobs of batch schedulers", _v5),
    (6, "alerts and silences", _v6),
    (7, "log lines: log_chunks and log_files", _v7),
]


def current_version(conn: sa.Connection) -> int:
    """The highest schema version applied (0 for an empty database)."""
    return conn.execute(sa.select(sa.func.coalesce(sa.func.max(schema_version.c.version), 0))).scalar_one()


def upgrade(engine: sa.Engine, migrations: list[Migration] | None = None) -> int:
    """Create the schema or bring it up to date; returns the version reached.

    Each migration runs in its own transaction together with its
    ``schema_version`` row, so a crash halfway leaves a version that is either
    fully applied or not at all (on SQLite and PostgreSQL, DDL is transactional).
    """
    migrations = MIGRATIONS if migrations is None else migrations
    with engine.begin() as conn:
        schema_version.create(conn, checkfirst=True)
    version = 0
    for number, description, apply in migrations:
        with engine.begin() as conn:
            version = current_version(conn)
            if number <= version:
                continue
            apply(conn)
            conn.execute(
                schema_version.insert().values(version=number, applied_at=time.time(), description=description)
            )
            version = number
    return version
