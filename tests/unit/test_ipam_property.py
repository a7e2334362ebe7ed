"""Property: over random sequences of adds, removes, renames (files and apps) and reorders, run
through the real load path with the previous allocations chained, no surviving instance ever
changes address, no two instances ever share one, and the same repo with the same previous
allocations always gives the same result, whether allocated incrementally or in a full pass."""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ipam_util import app_doc, ipam_files

from reconciler.intents.validate import check_tree
from reconciler.ipam import incremental
from reconciler.ipam.model import EMPTY

APPS = ("a", "b", "c", "d")
OPS = st.lists(st.tuples(st.sampled_from(["add", "add", "add", "remove", "rename-file", "reorder", "literal",
                                          "drop-app"]),
                         st.sampled_from(APPS), st.sampled_from(("web", "api")), st.integers(0, 11),
                         st.integers(0, 2**16)), min_size=1, max_size=14)


def _files(world: dict, seed: int) -> dict[str, bytes]:
    rnd = random.Random(seed)
    apps = {}
    for name in rnd.sample(sorted(world), len(world)):
        app = world[name]
        services = {}
        for svc in rnd.sample(sorted(app["services"]), len(app["services"])):
            insts = [dict(i) for i in app["services"][svc].values()]
            rnd.shuffle(insts)
            services[svc] = insts
        doc = app_doc(name, app["subnet"], services or {"idle": []})
        apps[f"{app['file']}.yaml"] = doc
    return ipam_files(apps)


def _addresses(repo) -> dict[tuple[str, ...], str]:
    """Every allocated value by owner: instance addresses, and each app's VNI and VLAN."""
    out: dict[tuple[str, ...], str] = {(a, s, i.name or i.host): i.address for a, app in repo.apps.items()
                                       for s, svc in app.spec.services.items() for i in svc.instances}
    for a, app in repo.apps.items():
        out[(a, "vni")], out[(a, "vlan")] = f"vni {app.spec.segment.vni}", f"vlan {app.spec.segment.vlan}"
    return out


def _step(world: dict, op: tuple) -> None:
    kind, app, svc, n, seed = op
    index = APPS.index(app)
    entry = world.setdefault(app, {"file": app, "subnet": f"10.80.{index}.0/25", "services": {}})
    insts = entry["services"].setdefault(svc, {})
    if kind == "add":
        insts[f"i{n}"] = {"name": f"i{n}", "host": f"n{index}"}
    elif kind == "literal":  # literal addresses high in the subnet, away from the allocations
        insts[f"l{n}"] = {"name": f"l{n}", "host": f"n{index}", "address": f"10.80.{index}.{(50 if svc == 'web' else 80) + n}"}
    elif kind == "remove" and insts:
        insts.pop(sorted(insts)[n % len(insts)])
    elif kind == "rename-file":
        entry["file"] = f"{app}-{seed}"
    elif kind == "drop-app":
        world.pop(app)
    if not insts and svc in entry.get("services", {}):
        entry["services"].pop(svc)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_surviving_instances_keep_their_address_and_none_share_one(ops):
    world: dict = {}
    previous, before = EMPTY, {}
    for op in ops:
        _step(world, op)
        files = _files(world, op[4])
        repo, errors = check_tree(files, previous=previous)
        assert errors == [], errors
        now = _addresses(repo)
        assert len(set(now.values())) == len(now), "two owners share an address, a VNI or a VLAN"
        for key, addr in now.items():
            if key in before:
                assert before[key] == addr, f"{key} moved from {before[key]} to {addr}"
        # the same repo in another file order, allocated by the full pass (the chained loads above
        # go through reconciler.ipam.incremental): the very same result
        saved = list(incremental._LAST)
        incremental._LAST.clear()
        again, _ = check_tree(_files(world, op[4] + 1), previous=previous)
        incremental._LAST[:] = saved
        assert _addresses(again) == now
        assert again.allocations.allocations.apps == repo.allocations.allocations.apps
        assert (again.allocations.new, again.allocations.released) == (repo.allocations.new, repo.allocations.released)
        previous, before = repo.allocations.allocations, now
