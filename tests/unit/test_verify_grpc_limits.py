"""Table-driven: what grpcio really does that the model must predict (both seen on the reference lab).

1. A route timeout under ~1.5 s: grpcio ends every call at once with DEADLINE_EXCEEDED (unknown:
   grpcio's clock offset, not the network).
2. A call to an address of the caller's own host (analytics: dash -> collector, both
on h4). The gRPC client does not bind, so the kernel gives the call the local route's preferred
source, the primary address of the subnet: the call is traced again from it (leg `call`), the
connect from the caller's bound address stays the `l4` verdict."""
from __future__ import annotations

import pytest
from verify_cases import change, defects, find, verify

from reconciler.verify.compare import UNKNOWN_KIND, VIOLATION
from reconciler.verify.model import DENY, PERMIT, UNKNOWN
from reconciler.verify.verdict import CALL, DELIVERED, DROPPED, UNDECIDED

DASH, COLLECTOR = "analytics/dash@10.50.3.12", "analytics/collector@10.50.3.11:9000"
A_COLLECTOR, A_DASH = "host/h4/address/eth1:10.50.3.11", "host/h4/address/eth1:10.50.3.12"


def _flags(collector_secondary: bool | None, dash_secondary: bool | None):
    res = defects()
    if collector_secondary is not None:
        res = change(res, A_COLLECTOR, lambda s: s.update(secondary=collector_secondary))
    if dash_secondary is not None:
        res = change(res, A_DASH, lambda s: s.update(secondary=dash_secondary))
    return res


def _pair(cmp):
    return next(v for r in cmp.results for s, _, v in r.pairs if s.id == DASH and r.dest.id == COLLECTOR)


def test_primary_not_observed_makes_the_call_unknown_never_delivered():
    cmp = verify(_flags(None, None))
    v = _pair(cmp)
    assert (v.l4, v.rpc) == (DELIVERED, UNDECIDED)
    f = find(cmp, UNKNOWN_KIND, DASH, COLLECTOR)
    [hop] = f.hops
    assert (hop.what, hop.decision, hop.leg) == ("source-address", UNKNOWN, CALL)
    assert "10.50.3.11: dropped" in hop.detail and "10.50.3.12: delivered" in hop.detail


def test_collector_primary_the_call_leaves_from_collector_and_h4_drops_it():
    cmp = verify(_flags(False, True))
    v = _pair(cmp)
    assert (v.l4, v.rpc) == (DELIVERED, DROPPED)        # a bound connect works, the call does not
    f = find(cmp, VIOLATION, DASH, COLLECTOR)
    first = f.hops[0]
    assert (first.device, first.what, first.decision, first.leg) == ("h4", "nftables", DENY, CALL)
    src = next(h for h in v.hops if h.what == "source-address")
    assert src.rule == "local route 10.50.3.11 src 10.50.3.11" and src.decision == PERMIT
    rbac = next(h for h in v.hops if h.what == "rbac")
    assert rbac.decision == DENY and "10.50.3.11" in rbac.detail     # source-IP RBAC refuses it too


@pytest.mark.parametrize("collector,dash", [(True, False), (None, False)])
def test_dash_primary_the_call_leaves_from_dash_and_is_delivered(collector, dash):
    cmp = verify(_flags(collector, dash))
    v = _pair(cmp)
    assert (v.l4, v.rpc) == (DELIVERED, DELIVERED)
    assert not [f for f in cmp.findings if f.source.id == DASH and f.dest.id == COLLECTOR]


def test_without_the_sidecar_layer_only_the_bound_connect_is_verified():
    cmp = verify(_flags(False, True), layers=["switch", "hypervisor", "host"])
    v = _pair(cmp)
    assert (v.l4, v.rpc) == (DELIVERED, None) and not any(h.leg == CALL for h in v.hops)


INVOICER, LEDGER_PG = "billing/invoicer@10.50.2.11", "billing/ledger@10.50.2.21:5432"
ROUTE = "sidecar/h2/route/ledger.billing:5432"


@pytest.mark.parametrize("ms,rpc", [(500, UNDECIDED), (1500, UNDECIDED), (1700, UNDECIDED), (1900, DELIVERED),
                                    (2000, DELIVERED), (None, DELIVERED)])
def test_route_timeout_under_the_grpcio_offset_is_never_delivered(ms, rpc):
    """grpcio's early timeout is its own clock offset (grpc/grpc#34547), not the network: the model
    names it and does not decide, so a pair under it is never `delivered`."""
    cmp = verify(change(defects(), ROUTE, lambda s: s.update(timeout_ms=ms)))
    v = next(v for r in cmp.results for s, _, v in r.pairs if s.id == INVOICER and r.dest.id == LEDGER_PG)
    assert (v.l4, v.rpc) == (DELIVERED, rpc)
    if rpc == UNDECIDED:
        f = find(cmp, UNKNOWN_KIND, INVOICER, LEDGER_PG)
        assert (f.hops[0].device, f.hops[0].what, f.hops[0].rule) == ("h2", "xds-client",
                                                                      f"route ledger.billing:5432 timeout_ms {ms}")
        assert "grpc/grpc#34547" in f.hops[0].detail


def test_the_examples_hold_exactly_these_two_defects():
    cmp = verify(defects())
    assert sorted((f.kind, f.source.id, f.dest.id) for f in cmp.findings) == [
        (UNKNOWN_KIND, DASH, COLLECTOR), (UNKNOWN_KIND, INVOICER, LEDGER_PG)]
    assert cmp.exit_code() == 2
