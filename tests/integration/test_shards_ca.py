"""Shard members must issue workload certificates from one CA: a daemon whose CA (RECONCILER_CA_DIR)
differs from a live member's does not join the ring, and says why; one with the same CA joins.
Real PostgreSQL server started by the test; skips without its binaries."""
from __future__ import annotations

import pytest
from pg_helpers import PgServer, available

from reconciler.service.shard_lease import Membership, ca_fingerprint
from reconciler.service.shards import ShardSettings
from reconciler.service.store import Store
from reconciler.xds.ca import CA

pytestmark = pytest.mark.skipif(bool(available()), reason=available() or "ok")


def test_a_member_with_another_ca_is_refused_and_one_with_the_same_joins(tmp_path, monkeypatch):
    server = PgServer()
    members: list[Membership] = []
    try:
        Store(server.url).close()
        one, other = tmp_path / "ca-one", tmp_path / "ca-other"
        CA.load_or_create(one, "corp.example")
        CA.load_or_create(other, "corp.example")

        def beat(name: str, ca_dir) -> Membership:
            monkeypatch.setenv("RECONCILER_CA_DIR", str(ca_dir))
            m = Membership(server.url, name, ShardSettings(lease_s=5.0, slots=64))
            members.append(m)
            m.beat()
            return m

        a = beat("a", one)
        assert a.epoch > 0 and a.last_error == ""
        b = beat("b", other)
        assert b.epoch == 0 and "one CA" in b.last_error and not b.alive()
        assert ca_fingerprint()[:16] in b.last_error and "BEGIN" not in b.last_error   # public digest, no key
        c = beat("c", one)
        assert c.epoch > 0 and c.last_error == "" and c.view is not None and c.view.members == ("a", "c")
        d = beat("d", tmp_path / "no-ca-yet")   # no CA yet (made on first issue): nothing to compare
        assert d.epoch > 0
    finally:
        for m in members:
            m.release()
        server.destroy()
