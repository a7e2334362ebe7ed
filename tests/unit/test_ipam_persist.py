"""The store side of IPAM (SQLite file): compare-and-swap on the generation, and the database's
own refusal of one value for two owners."""
from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.ipam import persist
from reconciler.ipam.model import EMPTY, Allocations, IpamResult, Kind, Row


def _result(previous: Allocations, *rows: Row) -> IpamResult:
    return IpamResult(Allocations.from_rows(rows, previous.generation), previous, tuple(rows), ())


def test_a_stale_generation_is_a_conflict(tmp_path: Path):
    engine = persist.engine_for(str(tmp_path / "s.db"))
    assert persist.read(engine) == EMPTY  # no tables yet: nothing allocated
    assert persist.commit(engine, _result(EMPTY, Row("a", Kind.ADDRESS, "web/h1", "10.0.0.2"))) == 1
    with pytest.raises(persist.Conflict, match="changed since generation 0"):
        persist.commit(engine, _result(EMPTY, Row("b", Kind.ADDRESS, "web/h1", "10.0.1.2")))
    now = persist.read(engine)
    assert now.generation == 1 and list(now.rows()) == [Row("a", Kind.ADDRESS, "web/h1", "10.0.0.2")]


def test_the_database_refuses_one_value_for_two_owners(tmp_path: Path):
    engine = persist.engine_for(str(tmp_path / "s.db"))
    first = persist.read(engine)
    persist.commit(engine, _result(first, Row("a", Kind.VNI, "", "7000")))
    # even a writer that got the generation right cannot take a value someone holds
    with pytest.raises(persist.Conflict, match="taken concurrently"):
        persist.commit(engine, _result(persist.read(engine), Row("b", Kind.VNI, "", "7000")))
    assert persist.generation(engine) == 1
