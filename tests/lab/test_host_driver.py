"""Host driver against real sshd + nftables hosts in netns (mini lab), through ansible-runner:
the conformance suite, policy checked with TCP (allowed connects, denied does not), element-only
set changes, and prune. Marked `lab`."""
from __future__ import annotations

import pytest
from conformance import CHECKS, converge, mismatches, observe, owned, plans, without_app
from hd_fixtures import HOSTS, HostAdapter, HypervisorAdapter, mini_lab  # noqa: F401 (fixture)
from hd_setup import MINI_APPS, desired_for, write_repo

from reconciler.model import Layer, Resource, State
from reconciler.status import Outcome

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def host_adapter(mini_lab):
    return HostAdapter(mini_lab)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_host_conformance(host_adapter, check):
    check(host_adapter)


def _converge_all(lab):
    for a in (HypervisorAdapter(lab), HostAdapter(lab)):     # underlay first
        res = converge(a, a.desired())
        assert all(r.outcome.ok for r in res.values()), {n: (r.outcome, r.error) for n, r in res.items()}
        assert mismatches(a, a.desired(), observe(a)) == []


def test_policy_allowed_flows_connect_denied_do_not(mini_lab):
    _converge_all(mini_lab)
    lab = mini_lab
    lab.listen("h1", 80)
    lab.listen("h2", 8080)
    lab.listen("h2", 9000)
    lab.listen("h4", 8080)
    lab.listen("h3", 5432)
    lab.listen("h3", 8000)
    # allowed: shop web -> api on grpc (same hypervisor, and across hv1 -> leaf1 -> hv2)
    assert lab.tcp_connects("h1", "10.61.1.21", 8080)
    assert lab.tcp_connects("h1", "10.61.1.22", 8080)
    # allowed: billing invoicer -> ledger on pg (two instances on one host)
    assert lab.tcp_connects("h3", "10.61.2.12", 5432, bind="10.61.2.11")
    # denied: reverse directions, undeclared ports, and across applications
    assert not lab.tcp_connects("h2", "10.61.1.11", 80)
    assert not lab.tcp_connects("h1", "10.61.1.21", 9000)
    assert not lab.tcp_connects("h4", "10.61.1.21", 8080)           # api -> api is not allowed
    assert not lab.tcp_connects("h3", "10.61.2.11", 8000, bind="10.61.2.12")
    assert not lab.tcp_connects("h1", "10.61.2.12", 5432)


def test_drift_on_one_rule_is_named_and_repaired(mini_lab):
    a = HostAdapter(mini_lab)
    converge(a, a.desired())
    key = a.drift("h2")
    obs = observe(a)
    got = owned(obs["h2"].resources)[key]
    assert got.spec != a.desired().get(key).spec
    ps = plans(a, a.desired(), obs, prune=False)
    assert [str(c.key) for p in ps for c in p.changes] == [str(key)]
    mini_lab.listen("h2", 8080)
    res = a.driver().apply([p for p in ps if p.changes])
    assert res["h2"].outcome is Outcome.APPLIED and res["h2"].writes == 1, res["h2"]
    assert mismatches(a, a.desired(), observe(a)) == []
    assert mini_lab.tcp_connects("h1", "10.61.1.21", 8080)


def test_element_only_change_sends_element_statements(mini_lab):
    a = HostAdapter(mini_lab)
    converge(a, a.desired())
    # grow one allow set by 300 addresses: only `add element` must be sent, then shrink it back
    key = next(r.key for r in a.desired().for_target(Layer.HOST, "h2")
               if r.key.kind == "nft-set" and r.key.name.endswith("allow_api_grpc"))
    base = a.desired().get(key)
    extra = [f"10.99.{i // 250}.{i % 250 + 1}" for i in range(300)]
    grown = State.of([r for r in a.desired() if r.key != key]
                     + [Resource(key, {**base.spec, "elements": sorted(set(base.spec["elements"]) | set(extra))},
                                 base.app)])
    d = a.driver()
    ps = [p for p in plans(a, grown, observe(a, d), prune=True) if p.changes]
    assert [p.target.name for p in ps] == ["h2"]
    res = d.apply(ps)
    assert res["h2"].outcome is Outcome.APPLIED, res["h2"].error
    assert res["h2"].details == ("nft netintent_shop/allow_api_grpc: add 300 element(s)",)
    assert mismatches(a, grown, observe(a, d)) == []
    ps = [p for p in plans(a, a.desired(), observe(a, d), prune=True) if p.changes]
    res = d.apply(ps)
    assert res["h2"].details == ("nft netintent_shop/allow_api_grpc: delete 300 element(s)",)
    assert mismatches(a, a.desired(), observe(a, d)) == []


def test_pruned_app_table_addresses_go_only_with_prune(mini_lab):
    a = HostAdapter(mini_lab)
    converge(a, a.desired())
    # billing removed from the repo: recompiled, so shop loses its route to billing's subnet too
    repo = write_repo(mini_lab.dir / "repo-no-billing", {"shop": MINI_APPS["shop"]}, mini_lab.inventory_path)
    gone = State.of(r for r in desired_for(repo, mini_lab.inventory_path, Layer.HOST) if r.key.target in HOSTS)
    assert without_app(a.desired(), "billing") != gone
    h1, h3 = mini_lab.nodes["h1"], mini_lab.nodes["h3"]
    # routes both ways exist while billing may call shop's api
    assert "10.61.1.0/24 via 10.61.2.1 dev eth1 proto 78" in h3.run("ip", "-4", "route").stdout
    assert "10.61.2.0/24 via 10.61.1.1 dev eth1 proto 78" in h1.run("ip", "-4", "route").stdout
    converge(a, gone, prune=False)
    assert h3.run("nft", "list", "table", "inet", "netintent_billing", check=False).returncode == 0
    assert "10.61.2.11/24" in h3.run("ip", "-4", "addr", "show", "dev", "eth1").stdout
    assert "10.61.2.0/24 via" in h1.run("ip", "-4", "route").stdout
    converge(a, gone, prune=True)
    assert h3.run("nft", "list", "table", "inet", "netintent_billing", check=False).returncode != 0
    assert "10.61.2.11" not in h3.run("ip", "-4", "addr", "show", "dev", "eth1").stdout
    assert "10.61." not in h3.run("ip", "-4", "route").stdout
    assert "10.61.2.0/24" not in h1.run("ip", "-4", "route").stdout     # shop's route to billing went too
    assert mismatches(a, gone, observe(a)) == []
    converge(a, a.desired())


def test_a_change_the_host_rejects_is_a_failed_result_naming_the_step(mini_lab):
    """The table went away between observe and apply (a stale plan): nft rejects the element
    statements, the result is FAILED with the step and nft's own message, and the next
    observe + apply repairs the host."""
    a = HostAdapter(mini_lab)
    converge(a, a.desired())
    key = next(r.key for r in a.desired().for_target(Layer.HOST, "h2")
               if r.key.kind == "nft-set" and r.key.name.endswith("allow_api_grpc"))
    base = a.desired().get(key)
    grown = State.of([r for r in a.desired() if r.key != key]
                     + [Resource(key, {**base.spec, "elements": sorted({*base.spec["elements"], "10.98.0.1"})},
                                 base.app)])
    d = a.driver()
    stale = observe(a, d)
    mini_lab.nodes["h2"].run("nft", "delete", "table", "inet", "netintent_shop")
    ps = [p for p in plans(a, grown, stale, prune=True) if p.changes]
    res = d.apply(ps)
    assert res["h2"].outcome is Outcome.FAILED
    assert res["h2"].error.startswith("nft: ") and "netintent_shop" in res["h2"].error, res["h2"].error
    assert res["h2"].observed is None          # the verify step never ran: nothing to read back
    assert mismatches(a, grown, observe(a, d)) != []
    res = converge(a, grown, driver=d)
    assert res["h2"].outcome is Outcome.APPLIED, res["h2"].error
    assert mismatches(a, grown, observe(a, d)) == []
    converge(a, a.desired())
