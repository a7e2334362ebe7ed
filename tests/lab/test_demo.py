"""The README's main command, `reconciler demo`, end to end on a private copy of the reference lab."""
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.lab.shared import skip_reason

pytestmark = pytest.mark.lab


def test_demo_passes_and_leaves_nothing_behind():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    cp = subprocess.run([sys.executable, "-m", "reconciler.cli", "demo", "--name", "ni-demo-t",
                         "--mgmt-subnet", "172.31.78.0/24"], capture_output=True, text=True, timeout=600)
    assert cp.returncode == 0, cp.stdout[-4000:] + cp.stderr[-2000:]
    out = cp.stdout
    assert "demo passed" in out
    assert out.count("[ok] connects") == 10 and out.count("[ok] refused") == 8  # before and after repair
    assert "~ nft-set netintent_shop/allow_api_grpc" in out
    assert "converged run writes nothing (0 writes)" in out
    # the four layers: gRPC through xds:///, the split, RBAC, plaintext, a commit, sidecar drift
    for line in ("[ok] gRPC calls via xds:///, split 90/10", "[ok] RBAC refuses a disallowed identity",
                 "[ok] plaintext refused (mtls: strict)", "[ok] commit 50/50 seen in traffic",
                 "[ok] drift detected per application (4/4)", "[ok] gRPC split 50/50 after repair",
                 "~ route api.shop:8080", "~ workload-cert api.shop"):
        assert line in out, line
    assert not Path("/run/netintent/ads").exists() or not any(Path("/run/netintent/ads").glob("172.31.78.1_*"))
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "ni-demo-t-" not in left
