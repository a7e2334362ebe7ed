"""Several processes opening one new store at the same moment all get the same schema.

Daemons and CLI runs (apply, ipam, report) may be the first to touch a database together;
without a lock they raced to CREATE TABLE ("table already exists", an empty schema_version).
Real processes, real SQLite file and a real PostgreSQL server.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg_helpers import PgServer, available
from sqlalchemy import text

from reconciler.service.store import Store, sqlite_url

PROCS = 6
OPENER = """
import sys, time
start = float(sys.argv[2])
while time.time() < start:          # all processes leave this line together (bounded by start)
    time.sleep(0.001)
from reconciler.service.store import Store
Store(sys.argv[1]).close()
"""


def _race(url: str) -> None:
    start = time.time() + 3.0  # past every interpreter's start-up, so the opens really overlap
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, url, repr(start)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(PROCS)]
    errors = []
    for p in procs:
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        if p.returncode != 0:
            errors.append(err.strip().splitlines()[-1] if err.strip() else f"exit {p.returncode}")
    assert not errors, errors
    store = Store(url)
    try:
        with store.engine.begin() as conn:
            rows = conn.execute(text("SELECT id, version FROM schema_version")).all()
        assert len(rows) == 1, rows
    finally:
        store.close()


def test_processes_creating_one_sqlite_store_at_once(tmp_path: Path) -> None:
    _race(sqlite_url(tmp_path / "state.db"))


@pytest.mark.skipif(bool(available()), reason=available() or "ok")
def test_processes_creating_one_postgres_store_at_once() -> None:
    server = PgServer()
    try:
        _race(server.url)
    finally:
        server.destroy()
