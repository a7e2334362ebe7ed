"""`reconciler lab up|status|exec|down` end to end through the real command line (root)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from labcheck import TOPOLOGIES, assert_lab_gone

from reconciler.lab import Lab
from reconciler.lab.shared import skip_reason

pytestmark = pytest.mark.lab


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-c", "import sys; from reconciler.cli import main; "
                           "sys.exit(main())", "lab", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_cli_up_status_exec_down(tmp_path):
    reason = skip_reason(("base", "ssh", "ovs"))
    if reason:
        pytest.skip(reason)
    topo = str(TOPOLOGIES / "links.clab.yml")
    opts = ["--name", "ni-lab-cli", "--mgmt-subnet", "172.31.84.0/24"]
    lab = Lab.from_file(topo, "ni-lab-cli", tmp_path / "inventory", "172.31.84.0/24")
    try:
        up = cli("up", topo, *opts, cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        assert "container-only fields ignored on 4 node(s): cmd, image, memory" in up.stderr
        assert (tmp_path / "inventory" / "ni-lab-cli.yml").exists()   # ./inventory by default
        again = cli("up", topo, *opts, cwd=tmp_path)
        assert again.returncode == 0 and "already up" in again.stderr
        st = cli("status", topo, *opts, "--json", cwd=tmp_path)
        assert st.returncode == 0
        doc = json.loads(st.stdout)
        assert doc["up"] is True and doc["state"] == "up" and {r["node"] for r in doc["nodes"]} == {"a", "b", "c", "d"}
        ex = cli("exec", topo, *opts, "b", "--", "ip", "-4", "-o", "addr", "show", "eth1",
                 cwd=tmp_path)
        assert ex.returncode == 0 and "10.77.1.2/24" in ex.stdout
        rc = cli("exec", topo, *opts, "b", "--", "sh", "-c", "exit 7", cwd=tmp_path)
        assert rc.returncode == 7
        bad = cli("exec", topo, *opts, "nosuch", "--", "true", cwd=tmp_path)
        assert bad.returncode == 1 and "no netns node 'nosuch'" in bad.stderr
        down = cli("down", topo, *opts, cwd=tmp_path)
        assert down.returncode == 0, down.stderr
        assert_lab_gone(lab)
        st = cli("status", topo, *opts, cwd=tmp_path)
        assert st.returncode == 3 and "lab ni-lab-cli: down" in st.stdout
    finally:
        lab.down(quiet=True)
