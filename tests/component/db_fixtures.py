"""Database fixtures: the same storage tests run on a real SQLite file and on the
real PostgreSQL named by ``CLUMON_TEST_PG_URL`` (each test in its own schema).

Import the fixtures into a test module: ``from db_fixtures import db_url, pg_schema_url``.
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import quote

import pytest
import sqlalchemy as sa

PG_URL_ENV = "CLUMON_TEST_PG_URL"


def pg_base_url() -> str:
    """The PostgreSQL URL for tests, or skip the test with the reason."""
    url = os.environ.get(PG_URL_ENV)
    if not url:
        pytest.skip(f"{PG_URL_ENV} is not set: no PostgreSQL server to test against")
    return url


def with_search_path(url: str, schema: str) -> str:
    """``url`` with every connection's search_path set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}options={quote(f'-csearch_path={schema}')}"


@pytest.fixture
def pg_schema_url():
    """A URL to a fresh, empty PostgreSQL schema, dropped after the test."""
    base = pg_base_url()
    schema = f"clumon_t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(f"{PG_URL_ENV} is set but the server is not reachable: {exc.orig}")
    yield with_search_path(base, schema)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def db_url(request, tmp_path):
    """A URL to an empty database on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'root.db'}"
    return request.getfixturevalue("pg_schema_url")
