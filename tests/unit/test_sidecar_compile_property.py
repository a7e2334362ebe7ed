"""Property: whatever the intents say, compile never produces a silent xDS failure mode.

Random applications (services, instances on random sidecar hosts, versions, ports,
policies, split/mtls/timeouts/retries) compile to resources that pass lint on every node
(domains match targets, localities weighted, router last, nothing dangling), survive the
spec <-> proto round trip, and carry unique keys.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.compile.context import CompileContext
from reconciler.compile.sidecar import compile_app
from reconciler.intents.models import Application, Inventory, InventoryHost, RepoConfig
from reconciler.model import State, thaw
from reconciler.xds import resources as R

HOSTS = ("h1", "h2", "h3", "h4")
SVCS = ("web", "api", "db", "jobs")
VERSIONS = ("v1", "v2", "v3")


@st.composite
def apps(draw):
    out = {}
    counter = [10]
    for app_i, app in enumerate(draw(st.lists(st.sampled_from(("shop", "billing", "ops")),
                                              min_size=1, max_size=3, unique=True))):
        services = {}
        for svc in draw(st.lists(st.sampled_from(SVCS), min_size=1, max_size=4, unique=True)):
            insts = []
            for _ in range(draw(st.integers(0, 3))):
                counter[0] += 1
                insts.append({"host": draw(st.sampled_from(HOSTS)),
                              "address": f"10.60.{app_i}.{counter[0]}",
                              "version": draw(st.sampled_from(VERSIONS))})
            ports = [{"name": "grpc", "port": 7000 + counter[0]}]
            if draw(st.booleans()):
                ports.append({"name": "admin", "port": 9000 + counter[0]})
            services[svc] = {"instances": insts, "ports": ports}
        names = sorted(services)
        allow = [{"from": draw(st.sampled_from(names)), "to": draw(st.sampled_from(names))}
                 for _ in range(draw(st.integers(0, 4)))]
        traffic = {}
        for svc in names:
            if draw(st.booleans()):
                t = {"mtls": draw(st.sampled_from(("strict", "permissive", "disable")))}
                if draw(st.booleans()):
                    t["split"] = {v: draw(st.integers(0, 100)) for v in
                                  draw(st.lists(st.sampled_from(VERSIONS), min_size=1, unique=True))}
                if draw(st.booleans()):
                    t["timeout_ms"] = draw(st.integers(1, 120_000))
                if draw(st.booleans()):
                    t["retries"] = draw(st.integers(1, 5))
                traffic[svc] = t
        out[app] = Application.model_validate({
            "apiVersion": "netintent/v1", "kind": "Application", "metadata": {"name": app},
            "spec": {"segment": {"vni": 5000 + app_i, "subnet": f"10.60.{app_i}.0/24"},
                     "services": services, "policy": {"allow": allow}, "traffic": traffic}})
    # cross-application flows: the callee app owns the client side on the caller's node
    names = sorted(out)
    if len(names) > 1 and draw(st.booleans()):
        a, b = names[0], names[1]
        callee = sorted(out[b].spec.services)[0]
        caller = sorted(out[a].spec.services)[0]
        doc = out[b].model_dump(by_alias=True)
        doc["spec"]["policy"]["allow"] = list(doc["spec"]["policy"]["allow"]) + \
            [{"from": f"{a}/{caller}", "to": callee}]
        out[b] = Application.model_validate(doc)
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(apps=apps(), sidecars=st.sets(st.sampled_from(HOSTS), min_size=1))
def test_compile_never_produces_silent_failures(apps, sidecars):
    inv = Inventory(hosts={h: InventoryHost(name=h, groups=("hosts",) + (("sidecars",) if h in sidecars else ()))
                           for h in HOSTS})
    ctx = CompileContext(RepoConfig(trust_domain="t.example"), inv, apps)
    everything = [r for app in apps.values() for r in compile_app(app, ctx)]
    State.of(everything)  # unique keys across applications
    by_node: dict[str, list] = {}
    for r in everything:
        assert r.key.target in sidecars
        spec = thaw(r.spec)
        assert R.from_proto(R.to_proto(r.key.kind, r.key.name, spec)) == (r.key.kind, r.key.name, spec)
        by_node.setdefault(r.key.target, []).append((r.key.kind, r.key.name, spec))
    for node, res in by_node.items():
        # a client node only gets what it needs: lint over its own resources is clean
        assert R.lint(res) == [], (node, R.lint(res))
