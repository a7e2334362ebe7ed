"""Fixtures shared by the integration tests.

`closed_port`: a loopback port nobody listens on. `mesh`: a fresh xds_helpers.Mesh (in-process ADS server, CA, sidecar driver) in the test's
tmp_path; every workload it started and its server are stopped when the test ends.
"""
from __future__ import annotations

import socket

import pytest


@pytest.fixture
def mesh(tmp_path):
    from xds_helpers import Mesh  # here, so the non-xDS tests in this folder don't load grpc

    m = Mesh(tmp_path)
    try:
        yield m
    finally:
        m.close()


@pytest.fixture
def closed_port() -> int:
    """A loopback TCP port nobody listens on (an unreachable SSH target)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port

