"""Bring one netns node's services up: holder, offloads, sshd, Open vSwitch, FRR, exec.

Contract: every function takes the Layout, the Node and (after `spawn_holder`) the pid of the
node's holder process (a `sleep` in the node's network, UTS and mount namespaces whose
hostname is the node name); everything else enters the node with nsenter on that pid.
Each function raises StepError naming the node and the step. Nothing here deletes anything:
teardown is `teardown.py`, which finds every process through the node's netns.
"""
from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

from reconciler.lab.layout import Layout
from reconciler.lab.system import OVS_SCHEMA, StepError, alive, in_node, read_pid, run
from reconciler.lab.topology import Node

FRR_DEFAULT_DAEMONS = "zebra=yes\nbgpd=yes\nstaticd=yes\nvtysh_enable=yes\n" \
    'zebra_options="  -A 127.0.0.1 -s 90000000"\nbgpd_options="   -A 127.0.0.1"\n' \
    'staticd_options="-A 127.0.0.1"\n'
VTYSH_CONF = "service integrated-vtysh-config\n"
# Platform quirks (verified on this machine, DESIGN.md "The lab"):
# TCP through the OVS userspace datapath fails unless TX checksum offload is off on every
# veth attached to OVS and on the far ends; the lab turns these off on every data interface.
OFFLOADS_OFF = ("tx",)
# Nodes route like containerlab's linux nodes (FRR transit, VXLAN underlay).
NODE_SYSCTLS = ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")


def spawn_holder(layout: Layout, node: Node) -> int:
    """Start the holder (new UTS + mount ns inside the node's netns); returns its pid."""
    ns = layout.netns(node.name)
    # `ip netns exec` gives a mount ns with the netns's own /sys; unshare adds the UTS ns.
    p = subprocess.Popen(
        ["ip", "netns", "exec", ns, "unshare", "--uts", "--",
         "sh", "-c", 'hostname "$1" && exec sleep infinity', "sh", node.name],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    return p.pid


def wait_holder(node: Node, pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == "sleep":
                    return
        except FileNotFoundError:
            break
        time.sleep(0.005)
    raise StepError(f"{node.name}: start namespace holder",
                    "holder process did not come up (unshare/hostname failed)")


def tx_offload_off(node: Node, holder: int, ifaces: list[str]) -> None:
    for iface in ifaces:
        argv = ["ethtool", "-K", iface]
        for feature in OFFLOADS_OFF:
            argv += [feature, "off"]
        run(in_node(holder, argv, mount=False), f"{node.name}: {' '.join(argv)}")


def sysctls(node: Node, holder: int) -> None:
    run(in_node(holder, ["sysctl", "-q", "-w", *NODE_SYSCTLS], mount=False),
        f"{node.name}: sysctl {' '.join(NODE_SYSCTLS)}")


def start_sshd(layout: Layout, node: Node, holder: int) -> None:
    d = layout.node_dir(node.name)
    d.mkdir(parents=True, exist_ok=True)
    hostkey = d / "ssh_host_ed25519_key"
    if not hostkey.exists():
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{node.name}-host",
             "-f", str(hostkey)], f"{node.name}: generate ssh host key")
    lines = [
        f"ListenAddress {node.mgmt_ipv4}",
        "Port 22",
        f"HostKey {hostkey}",
        f"PidFile {d / 'sshd.pid'}",
        f"AuthorizedKeysFile {layout.state_dir / 'authorized_keys'}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "MaxSessions 64",
        "MaxStartups 64:30:128",
        "Subsystem sftp internal-sftp",
    ]
    env = layout.ovs_env(node.name) if layout.runs_ovs(node) else {}
    env.update(node.env)
    if env:
        # keys and values are validated in topology.py (no quotes, backslashes, newlines)
        lines.append("SetEnv " + " ".join(f'"{k}={v}"' for k, v in env.items()))
    cfg = d / "sshd_config"
    cfg.write_text("\n".join(lines) + "\n")
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run(in_node(holder, ["/usr/sbin/sshd", "-f", str(cfg)]), f"{node.name}: start sshd")
    _wait_pidfile(node, d / "sshd.pid", "start sshd")


def _wait_pidfile(node: Node, path: Path, step: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = read_pid(str(path))
        if pid and alive(pid):
            return pid
        time.sleep(0.01)
    raise StepError(f"{node.name}: {step}", f"no live pid in {path} after {timeout:g}s")


def start_ovs(layout: Layout, node: Node, holder: int) -> None:
    d = layout.ovs_dir(node.name)
    d.mkdir(parents=True, exist_ok=True)
    env = layout.ovs_env(node.name)
    db, sock = d / "conf.db", d / "db.sock"
    if not db.exists():
        run(["ovsdb-tool", "create", str(db), OVS_SCHEMA], f"{node.name}: create OVS database")
    run(in_node(holder, ["ovsdb-server", str(db), f"--remote=punix:{sock}",
                         "--pidfile", "--detach", "--log-file"]),
        f"{node.name}: start ovsdb-server", env=env)
    run(in_node(holder, ["ovs-vsctl", "--no-wait", "init"]), f"{node.name}: init OVS", env=env)
    run(in_node(holder, ["ovs-vswitchd", f"unix:{sock}", "--pidfile", "--detach",
                         "--log-file"]), f"{node.name}: start ovs-vswitchd", env=env)
    br = layout.ovs_bridge(node)
    argv = ["ovs-vsctl", "--timeout=20", "--", "--may-exist", "add-br", br,
            "--", "set", "bridge", br, "datapath_type=netdev"]
    for port in layout.ovs_ports(node):
        argv += ["--", "--may-exist", "add-port", br, port]
    run(in_node(holder, argv), f"{node.name}: create OVS bridge {br}", env=env, timeout=30)
    run(in_node(holder, ["ip", "link", "set", "dev", br, "up"]), f"{node.name}: set {br} up")
    # Plain `ovs-vsctl` on the node (nsenter or SSH) reaches this node's OVS even without env.
    if os.path.isdir("/run/openvswitch"):
        run(in_node(holder, ["mount", "--bind", str(d), "/run/openvswitch"]),
            f"{node.name}: bind OVS run dir")


def _copy_frr_files(layout: Layout, node: Node) -> Path:
    etc = layout.frr_etc(node.name)
    etc.mkdir(parents=True, exist_ok=True)
    for host, cont, _opts in node.binds:
        if not (cont.startswith("/etc/frr/") or cont.rstrip("/") == "/etc/frr"):
            continue
        src = Path(host) if os.path.isabs(host) else layout.topo.base_dir / host
        if not src.exists():
            raise StepError(f"{node.name}: bind {host}:{cont}", f"{src} does not exist")
        if src.is_dir():
            for f in src.iterdir():
                if f.is_file():
                    shutil.copyfile(f, etc / f.name)
        else:
            shutil.copyfile(src, etc / Path(cont).name)
    if not (etc / "daemons").exists():
        (etc / "daemons").write_text(FRR_DEFAULT_DAEMONS)
    if not (etc / "frr.conf").exists():
        (etc / "frr.conf").write_text(f"hostname {node.name}\n")
    if not (etc / "vtysh.conf").exists():
        (etc / "vtysh.conf").write_text(VTYSH_CONF)
    for f in [etc, *etc.iterdir()]:
        shutil.chown(f, "frr", "frr")
    return etc


def start_frr(layout: Layout, node: Node, holder: int) -> None:
    etc = _copy_frr_files(layout, node)
    ns = layout.netns(node.name)
    # Root mount ns (mount=False): the daemons resolve /etc/frr/NS and /run/frr/NS as is.
    run(in_node(holder, ["/usr/lib/frr/frrinit.sh", "start", ns], mount=False),
        f"{node.name}: start FRR (pathspace {ns})", timeout=60)
    runp = layout.frr_run(node.name)
    # Inside the node, plain `vtysh` (nsenter or SSH) talks to this node's FRR.
    run(in_node(holder, ["mount", "--bind", str(runp), "/run/frr"]), f"{node.name}: bind FRR run dir")
    run(in_node(holder, ["mount", "--bind", str(etc), "/etc/frr"]), f"{node.name}: bind FRR etc dir")


def bind_other(layout: Layout, node: Node, holder: int) -> list[str]:
    """Bind-mount non-FRR binds in the node's mount ns; returns warnings for skipped ones."""
    warnings = []
    for host, cont, opts in node.binds:
        if cont.startswith("/etc/frr/") or cont.rstrip("/") == "/etc/frr":
            continue
        src = Path(host) if os.path.isabs(host) else layout.topo.base_dir / host
        if not src.exists() or not os.path.exists(cont) or src.is_dir() != os.path.isdir(cont):
            warnings.append(f"{node.name}: bind {host}:{cont} skipped (source or target missing)")
            continue
        run(in_node(holder, ["mount", "--bind", str(src), cont]), f"{node.name}: bind {cont}")
        if "ro" in opts.split(","):
            run(in_node(holder, ["mount", "-o", "remount,bind,ro", cont]),
                f"{node.name}: bind {cont} read-only")
    return warnings


def run_exec(layout: Layout, node: Node, holder: int) -> None:
    env = layout.node_env(node)
    for i, cmd in enumerate(node.exec):
        try:
            argv = shlex.split(cmd)
        except ValueError as e:
            raise StepError(f"{node.name}: exec[{i}] {cmd!r}", f"cannot split: {e}") from None
        if not argv:
            continue
        run(in_node(holder, argv), f"{node.name}: exec[{i}] {cmd!r}", env=env, timeout=60)
