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


def _v1(conn: sa.Connection) -> None:
    metadata.create_all(conn, tables=list(V1_TABLES), checkfirst=True)


Migration = tuple[int, str, Callable[[sa.Connection], None]]

#: Ordered migrations. Append; never edit one that has shipped.
MIGRATIONS: list[Migration] = [
    (1, "frames, dictionaries, events, nodes, state_history", _v1),
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
