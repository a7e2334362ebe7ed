"""SidecarDriver._may_subscribe_more: after a push, types no client of a node asked for get an
extra wait only when the push changed something a client of the node already subscribes to
(only accepting such a change makes a client ask for more)."""
from __future__ import annotations

import pytest

from reconciler.drivers.sidecar import SidecarDriver
from reconciler.xds import resources as R


class _Subs:
    """The one cache operation the rule reads."""

    def __init__(self, subs):
        self.subs = subs

    def subscriptions(self, node):
        if self.subs is None:
            raise RuntimeError("unknown op 'subscriptions'")   # a relay from before the op
        return self.subs


OLD = {R.LISTENER: {"api:8080": "L1", "grpc/server?x": "S1"}, R.ROUTE: {"api:8080": "R1"}}


@pytest.mark.parametrize("subs, new, expected", [
    # the listener the client uses now names something new: it will ask for it
    ({R.LISTENER: ["api:8080"]}, {R.LISTENER: {"api:8080": "L2", "grpc/server?x": "S1"}}, True),
    # only a listener no client asked for was added or changed: nobody will ask for more
    ({R.LISTENER: ["grpc/server?x"]}, {R.LISTENER: {**OLD[R.LISTENER], "web:80": "L9"}}, False),
    ({R.LISTENER: ["grpc/server?x"], R.ROUTE: ["api:8080"]}, {**OLD, R.CLUSTER: {"web": "C1"}}, False),
    # a wildcard subscription sees every change of its type
    ({R.LISTENER: None}, {R.LISTENER: {**OLD[R.LISTENER], "web:80": "L9"}}, True),
    # a subscribed resource removed is a change the client sees
    ({R.ROUTE: ["api:8080"]}, {R.LISTENER: OLD[R.LISTENER], R.ROUTE: {}}, True),
    # no stream at all: nothing subscribes
    ({}, {R.LISTENER: {"web:80": "L9"}}, False),
    # the cache cannot say: wait as before
    (None, OLD, True),
])
def test_the_follow_up_wait_is_for_clients_that_saw_a_change(subs, new, expected):
    driver = SidecarDriver(cache=_Subs(subs))
    assert driver._may_subscribe_more("n1", OLD, new) is expected
