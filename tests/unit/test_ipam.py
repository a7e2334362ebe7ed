"""IPAM through the one load path (reconciler.intents.validate with `previous`): what is
allocated, that it is stable, and every refusal with its file:line message."""
from __future__ import annotations

import pytest
from ipam_util import app_doc, ipam_files

from reconciler.intents.validate import check_tree
from reconciler.ipam.model import EMPTY, Allocations, IpamResult, Kind


def load(apps: dict, previous: Allocations = EMPTY, **kw):
    repo, errors = check_tree(ipam_files(apps, **kw), previous=previous)
    return repo, [str(e) for e in errors]


def addresses(repo) -> dict[tuple[str, str, str], str]:
    return {(a, s, i.name or i.host): i.address for a, app in repo.apps.items()
            for s, svc in app.spec.services.items() for i in svc.instances}


def ok(apps: dict, previous: Allocations = EMPTY, **kw):
    repo, errors = load(apps, previous, **kw)
    assert errors == [] and repo is not None
    assert isinstance(repo.allocations, IpamResult)
    return repo


def test_allocates_skipping_network_gateway_reserved_and_literals():
    repo = ok({"a.yaml": app_doc("a", "10.70.0.0/28", {"web": [{"host": "n0", "name": f"i{k}"} for k in range(4)]
                                                      + [{"host": "n0", "name": "lit", "address": "10.70.0.5"}]},
                                 reserved=["10.70.0.2-10.70.0.3"])})
    got = sorted(v for (_, _, n), v in addresses(repo).items() if n != "lit")
    assert got == ["10.70.0.4", "10.70.0.6", "10.70.0.7", "10.70.0.8"]
    seg = repo.apps["a"].spec.segment
    assert (seg.vni, seg.vlan) == (7000, 300)


def test_same_repo_same_result_whatever_the_file_names_and_order():
    web = [{"host": "n0", "name": f"i{k}"} for k in range(5)]
    one = ok({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": web}), "b.yaml": app_doc("b", "10.70.1.0/24",
                                                                                       {"x": [{"host": "n1"}]})})
    two = ok({"zz.yaml": app_doc("b", "10.70.1.0/24", {"x": [{"host": "n1"}]}),
              "aa.yaml": app_doc("a", "10.70.0.0/24", {"web": list(reversed(web))})})
    assert addresses(one) == addresses(two)
    assert one.allocations.allocations.apps == two.allocations.allocations.apps


def test_kept_across_commits_when_others_come_and_go():
    first = ok({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0", "name": f"i{k}"} for k in range(3)]})})
    kept = addresses(first)[("a", "web", "i2")]
    # i0 and i1 removed, i9 added, a new app before it in every order
    second = ok({"0.yaml": app_doc("b", "10.70.1.0/24", {"x": [{"host": "n1"}]}),
                 "a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0", "name": "i9"},
                                                                 {"host": "n0", "name": "i2"}]})},
                previous=first.allocations.allocations)
    assert addresses(second)[("a", "web", "i2")] == kept
    assert addresses(second)[("a", "web", "i9")] != kept
    assert second.apps["a"].spec.segment.vni == first.apps["a"].spec.segment.vni
    assert {r.owner for r in second.allocations.released if r.kind is Kind.ADDRESS} == {"web/i0", "web/i1"}


def test_exhausted_subnet_names_file_line_and_what_is_left():
    insts = [{"host": "n0", "name": f"i{k}"} for k in range(6)]
    repo, errors = load({"a.yaml": app_doc("a", "10.70.0.0/29", {"web": insts})})
    assert repo is None
    assert errors == ['apps/a.yaml:21: $.spec.services.web.instances[5]: no address left for instance "web/i5" in '
                      "subnet 10.70.0.0/29: 5 of 5 usable address(es) left before this change, 6 new instance(s) "
                      "need one (1 do not fit); widen the subnet or free addresses"]


def test_literal_colliding_with_an_allocation_names_both():
    first = ok({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0", "name": "i0"}]})})
    assert addresses(first)[("a", "web", "i0")] == "10.70.0.2"
    repo, errors = load({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0", "name": "i0"}],
                                                                 "api": [{"host": "n0", "address": "10.70.0.2"}]})},
                        previous=first.allocations.allocations)
    assert repo is None
    assert errors == ['apps/a.yaml:19: $.spec.services.api.instances[0].address: address 10.70.0.2 collides with the '
                      'address allocated to instance "web/i0" (apps/a.yaml:11); choose another address']


def test_shrinking_a_segment_below_its_allocations_is_refused():
    first = ok({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0", "name": f"i{k}"} for k in range(20)]})})
    repo, errors = load({"a.yaml": app_doc("a", "10.70.0.0/28", {"web": [{"host": "n0", "name": f"i{k}"}
                                                                         for k in range(20)]})},
                        previous=first.allocations.allocations)
    assert repo is None
    assert errors[0] == ('apps/a.yaml:7: $.spec.segment.subnet: segment no longer holds address 10.70.0.15 allocated '
                         'to instance "web/i3" (outside the subnet) (and 6 more): shrinking a segment below its '
                         'allocations is refused; remove those instances first or give them literal addresses')


def test_two_instances_with_one_key_must_be_named():
    repo, errors = load({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0"}, {"host": "n0"}]})})
    assert repo is None
    assert errors == ['apps/a.yaml:12: $.spec.services.web.instances[1]: instance key "web/n0" is used twice in this '
                      "service (line 11); give each instance its own `name`"]


def test_vni_pool_exhausted_and_missing_pool():
    config = "apiVersion: netintent/v1\nkind: ReconcilerConfig\nipam:\n  vni: {start: 7000, end: 7001}\n"
    apps = {f"{n}.yaml": app_doc(n, f"10.70.{i}.0/24", {"web": [{"host": f"n{i}", "address": f"10.70.{i}.9"}]})
            for i, n in enumerate("abc")}
    apps["a.yaml"]["spec"]["segment"]["vni"] = 7001
    repo, errors = load(apps, config=config)
    assert errors == ["apps/c.yaml:6: $.spec.segment: ipam.vni pool 7000..7001 of reconciler.yaml is exhausted: "
                      "1 of 2 left before this change, 2 new application(s) need one (1 do not fit)"]
    repo, errors = load(apps, config="apiVersion: netintent/v1\nkind: ReconcilerConfig\n")
    assert errors[0] == ("apps/b.yaml:6: $.spec.segment: no vni given and reconciler.yaml declares no ipam.vni pool "
                         "to allocate one from")


def test_literal_vni_colliding_with_an_allocated_one():
    first = ok({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0"}]})})
    repo, errors = load({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0"}]}),
                         "b.yaml": app_doc("b", "10.70.1.0/24", {"web": [{"host": "n1"}]}, vni=7000)},
                        previous=first.allocations.allocations)
    assert 'apps/b.yaml:8: $.spec.segment.vni: VNI 7000 collides with the VNI allocated to application "a" ' \
           '(apps/a.yaml); choose another' in errors


@pytest.mark.parametrize("edit", ["gateway", "reserved"])
def test_gateway_or_reserved_moved_onto_an_allocation_is_refused(edit: str):
    first = ok({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0"}]})})
    seg = {"gateway": "10.70.0.2"} if edit == "gateway" else {"reserved": ["10.70.0.2"]}
    repo, errors = load({"a.yaml": app_doc("a", "10.70.0.0/24", {"web": [{"host": "n0"}]}, **seg)},
                        previous=first.allocations.allocations)
    assert repo is None and "segment no longer holds address 10.70.0.2" in errors[0]
