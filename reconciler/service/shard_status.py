"""Shards on the command line: `serve --shards` options and who owns what in `status`.

Contract:
- `add_shard_args(parser)` adds `--instance`, `--shards`, `--lease`, `--shard-slots`, `--shard-batch-max`
  to `serve`; `shard_settings(args)` is the `ShardSettings` (None without `--shards`: the
  daemon keeps the single leader/standby mode).
- `shard_ownership(store)` reads the ring from the store's database: None when no daemon
  ever joined (or the store has no shard tables); else the generation, each member with its
  epoch, lease left (database clock), slot count and apps, and `owner` per app. Apps are
  the ones the store knows (`app_state`) plus the fabric.
- `print_ownership(ownership)` prints that as a table above the app table.
"""
from __future__ import annotations

import argparse
from typing import Any

from reconciler.service.shards import ShardSettings, owner_of, owners_of_slots


def add_shard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--instance", help="this daemon's name in the store and the shard ring (default host:pid)")
    p.add_argument("--shards", action="store_true",
                   help="share the apps with other daemons on the same PostgreSQL store (leases, fencing)")
    p.add_argument("--lease", type=float, default=10.0, help="shard lease period in seconds (default 10)")
    p.add_argument("--shard-slots", type=int, default=1024, help="slots apps hash into (same on every daemon)")
    p.add_argument("--shard-batch-max", type=float, default=300.0,
                   help="longest write batch; the database ends a batch session idle longer than this")


def shard_settings(args: argparse.Namespace) -> ShardSettings | None:
    if not getattr(args, "shards", False):
        return None
    return ShardSettings(lease_s=args.lease, slots=args.shard_slots, batch_max_s=args.shard_batch_max)


def shard_ownership(store: Any) -> dict[str, Any] | None:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError
    try:
        with store.engine.connect() as c:
            ring = c.execute(text("SELECT generation, slots, eps, vnodes, "
                                  "extract(epoch from clock_timestamp())::float8 FROM shard_ring WHERE id = 1")).first()
            if ring is None:
                return None
            rows = c.execute(text("SELECT member, epoch, expires, heartbeat, info FROM shard_members "
                                  "ORDER BY member")).all()
            known = [r[0] for r in c.execute(text("SELECT app FROM app_state ORDER BY app")).all()]
    except DBAPIError:   # SQLite store, or no shard tables: no shards
        return None
    generation, slots, eps, vnodes, now = ring
    members = tuple(sorted(r[0] for r in rows))
    owners = owners_of_slots(members, ShardSettings(slots=int(slots), eps=float(eps), vnodes=int(vnodes)))
    apps = ["", *known]
    owner = {a: owner_of(a, owners) for a in apps}
    out = []
    for m, epoch, expires, heartbeat, _info in rows:
        out.append({"member": m, "epoch": int(epoch), "lease_left_s": round(float(expires) - now, 1),
                    "heartbeat_age_s": round(now - float(heartbeat), 1), "slots": owners.count(m),
                    "apps": sorted(a for a in apps if owner[a] == m)})
    return {"generation": int(generation), "members": out, "owner": owner}


def print_ownership(own: dict[str, Any] | None) -> None:
    if not own:
        return
    print(f"shards: generation {own['generation']}, {len(own['members'])} member(s)")
    print(f"  {'MEMBER':<28} {'EPOCH':>5} {'LEASE LEFT':>10} {'SLOTS':>5}  APPS")
    for m in own["members"]:
        lapsed = " (lapsed)" if m["lease_left_s"] <= 0 else ""
        names = ", ".join(a or "(fabric)" for a in m["apps"])
        print(f"  {m['member']:<28} {m['epoch']:>5} {m['lease_left_s']:>9.1f}s {m['slots']:>5}  {names}{lapsed}")
