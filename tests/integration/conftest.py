"""Fixtures shared by the integration tests.

`mesh`: a fresh xds_helpers.Mesh (in-process ADS server, CA, sidecar driver) in the test's
tmp_path; every workload it started and its server are stopped when the test ends.
"""
from __future__ import annotations

import pytest


@pytest.fixture
def mesh(tmp_path):
    from xds_helpers import Mesh  # here, so the non-xDS tests in this folder don't load grpc

    m = Mesh(tmp_path)
    try:
        yield m
    finally:
        m.close()
