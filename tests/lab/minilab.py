"""A small netns lab for driver tests: hosts with sshd, hypervisors and a leaf with their own OVS.

Contract: `MiniLab(prefix).up(spec)` creates, with unique names (`<prefix><id>-<node>`):
  - a management Linux bridge in the root netns with a /24 of its own, one veth per node,
  - one netns per node running its own sshd on the management address (root login with a
    key generated for this lab; `SetEnv OVS_RUNDIR` on OVS nodes),
  - for `hypervisor` and `leaf` nodes an ovsdb-server + ovs-vswitchd inside the netns with
    their own OVS_RUNDIR, a `br0` bridge (userspace datapath, `datapath_type=netdev`),
  - data links (veth) between nodes; interfaces on OVS nodes are added to br0 (leaf ports as
    plain trunks; hypervisor ports untagged, the driver under test tags them),
  - TX checksum offload off on every data interface (TCP through the OVS userspace datapath).
It writes an Ansible inventory (`inventory_path`) following docs/inventory.md.
`down()` stops every process it started (by pid, from the pid files it wrote), deletes every
netns, link and file it made. Every wait is bounded. Needs root.
"""
from __future__ import annotations

import ipaddress
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

OVS_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def sh(*argv: str, ns: str | None = None, check: bool = True, env: dict | None = None,
       input: str | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: rc={p.returncode} {p.stderr.strip()}")
    return p


@dataclass
class Node:
    name: str
    role: str                 # host | hypervisor | leaf
    ns: str
    mgmt_ip: str
    dir: Path
    vars: dict = field(default_factory=dict)

    @property
    def ovs_env(self) -> dict:
        d = str(self.dir / "ovs")
        return {**os.environ, "OVS_RUNDIR": d, "OVS_DBDIR": d, "OVS_LOGDIR": d}

    def run(self, *argv: str, check: bool = True, input: str | None = None,
            timeout: float = 20) -> subprocess.CompletedProcess:
        env = self.ovs_env if self.role in ("hypervisor", "leaf") else None
        return sh(*argv, ns=self.ns, check=check, env=env, input=input, timeout=timeout)


class MiniLab:
    """See module docstring. `spec` = {"nodes": {name: role}, "links": [("a:if", "b:if")],
    "vars": {name: {inventory vars}}}."""

    def __init__(self, prefix: str = "ni-hd-") -> None:
        self.id = f"{random.randrange(16**4):04x}"
        self.prefix = prefix
        self.dir = Path(tempfile.mkdtemp(prefix=f"{prefix}{self.id}-"))
        self.nodes: dict[str, Node] = {}
        self.bridge = f"nihd{self.id}"
        self.subnet = self._free_subnet()
        self.inventory_path = self.dir / "inventory.yml"
        self.key = self.dir / "id_ed25519"
        self._links: list[str] = []

    # ------------------------------------------------------------------ bring up
    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = sh("ip", "-4", "-o", "addr").stdout
        for _ in range(64):
            net = ipaddress.ip_network(f"172.31.{random.randrange(1, 255)}.0/24")
            if f" {net.network_address + 1}/" not in used and str(net)[:-5] not in used:
                return net
        raise RuntimeError("no free 172.31.x.0/24 for the mini lab")

    def up(self, spec: dict) -> "MiniLab":
        try:
            self._up(spec)
        except BaseException:
            self.down()
            raise
        return self

    def _up(self, spec: dict) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key))
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.dir / "hostkey"))
        shutil.copy(self.key.with_suffix(".pub"), self.dir / "authorized_keys")
        gw = str(self.subnet.network_address + 1)
        sh("ip", "link", "add", self.bridge, "type", "bridge")
        sh("ip", "addr", "add", f"{gw}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        for i, (name, role) in enumerate(spec["nodes"].items()):
            ns = f"{self.prefix}{self.id}-{name}"
            node = Node(name, role, ns, str(self.subnet.network_address + 10 + i), self.dir / name,
                        dict(spec.get("vars", {}).get(name, {})))
            node.dir.mkdir()
            self.nodes[name] = node
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            peer = f"nm{self.id}{i:02d}"
            sh("ip", "link", "add", peer, "type", "veth", "peer", "name", "mgmt0", "netns", ns)
            self._links.append(peer)
            sh("ip", "link", "set", peer, "master", self.bridge, "up")
            sh("ip", "-n", ns, "addr", "add", f"{node.mgmt_ip}/24", "dev", "mgmt0")
            sh("ip", "-n", ns, "link", "set", "mgmt0", "up")
            if role in ("hypervisor", "leaf"):
                self._start_ovs(node)
            self._start_sshd(node)
        for a, b in spec.get("links", []):
            self.link(a, b)
        self._write_inventory()
        self._wait_ssh()

    def _start_ovs(self, node: Node) -> None:
        d = node.dir / "ovs"
        d.mkdir()
        sh("ovsdb-tool", "create", str(d / "conf.db"), OVS_SCHEMA)
        node.run("ovsdb-server", str(d / "conf.db"), f"--remote=punix:{d}/db.sock",
                 f"--pidfile={d}/ovsdb-server.pid", "--detach", f"--log-file={d}/ovsdb-server.log")
        node.run("ovs-vsctl", "--no-wait", "init")
        node.run("ovs-vswitchd", f"unix:{d}/db.sock", f"--pidfile={d}/ovs-vswitchd.pid", "--detach",
                 f"--log-file={d}/ovs-vswitchd.log")
        node.run("ovs-vsctl", "add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev",
                 "fail_mode=standalone")

    def _start_sshd(self, node: Node) -> None:
        conf = node.dir / "sshd_config"
        lines = [f"ListenAddress {node.mgmt_ip}", f"HostKey {self.dir / 'hostkey'}",
                 f"PidFile {node.dir / 'sshd.pid'}", f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                 "PermitRootLogin prohibit-password", "PasswordAuthentication no", "UsePAM no",
                 "StrictModes no", "MaxSessions 50", "MaxStartups 50:30:100"]
        if node.role in ("hypervisor", "leaf"):
            lines.append(f"SetEnv OVS_RUNDIR={node.dir / 'ovs'}")
        conf.write_text("\n".join(lines) + "\n")
        sh("/usr/sbin/sshd", "-f", str(conf), ns=node.ns)

    def stop_sshd(self, name: str) -> None:
        node = self.nodes[name]
        pid = _read_pid(node.dir / "sshd.pid")
        if pid:
            _kill(pid)
        # Established ControlPersist masters would keep working; cut them too.
        for p in sh("ip", "netns", "pids", node.ns, check=False).stdout.split():
            cmd = Path(f"/proc/{p}/cmdline").read_bytes() if Path(f"/proc/{p}/cmdline").exists() else b""
            if b"sshd" in cmd:
                _kill(int(p))

    def start_sshd(self, name: str) -> None:
        self._start_sshd(self.nodes[name])
        self._wait_ssh([name])

    def link(self, a: str, b: str) -> None:
        (na, ia), (nb, ib) = a.split(":"), b.split(":")
        A, B = self.nodes[na], self.nodes[nb]
        tmp_a, tmp_b = f"nl{self.id}{len(self._links):03d}a", f"nl{self.id}{len(self._links):03d}b"
        sh("ip", "link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        self._links.append(tmp_a)
        for tmp, node, iface in ((tmp_a, A, ia), (tmp_b, B, ib)):
            sh("ip", "link", "set", tmp, "netns", node.ns)
            sh("ip", "-n", node.ns, "link", "set", tmp, "name", iface)
            sh("ip", "-n", node.ns, "link", "set", iface, "up")
            sh("ethtool", "-K", iface, "tx", "off", ns=node.ns, check=False)
            if node.role in ("hypervisor", "leaf"):
                node.run("ovs-vsctl", "add-port", "br0", iface)

    def _write_inventory(self) -> None:
        groups: dict[str, dict] = {"hosts": {}, "hypervisors": {}, "switches": {}}
        role_group = {"host": "hosts", "hypervisor": "hypervisors", "leaf": "switches"}
        for n in self.nodes.values():
            groups[role_group[n.role]][n.name] = {"ansible_host": n.mgmt_ip, **n.vars}
        inv = {"all": {"vars": {"ansible_user": "root", "ansible_ssh_private_key_file": str(self.key),
                                "ansible_python_interpreter": "/usr/bin/python3"},
                       "children": {g: {"hosts": h} for g, h in groups.items() if h}}}
        self.inventory_path.write_text(yaml.safe_dump(inv, sort_keys=False))

    def _wait_ssh(self, names: list[str] | None = None, timeout_s: float = 10) -> None:
        import socket
        for name in names or list(self.nodes):
            ip, deadline = self.nodes[name].mgmt_ip, time.monotonic() + timeout_s
            while True:
                try:
                    socket.create_connection((ip, 22), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"sshd on {name} ({ip}) did not come up")
                    time.sleep(0.05)

    # ------------------------------------------------------------------ helpers
    def tcp_connects(self, src: str, dst_ip: str, port: int, timeout_s: float = 1.5, bind: str = "") -> bool:
        """TCP connect from inside `src`'s netns (python one-liner, argv only), optionally from
        source address `bind`."""
        return tcp_connects(self.nodes[src].ns, dst_ip, port, timeout_s, bind)

    def listen(self, node: str, port: int) -> subprocess.Popen:
        """A TCP listener on all addresses of `node` (killed by down())."""
        self._by_port = getattr(self, "_by_port", {})
        if (node, port) in self._by_port and self._by_port[(node, port)].poll() is None:
            return self._by_port[(node, port)]
        p = listen(self.nodes[node].ns, port)
        self._listeners = getattr(self, "_listeners", []) + [p]
        self._by_port[(node, port)] = p
        return p

    # ------------------------------------------------------------------ tear down
    def down(self) -> None:
        for p in getattr(self, "_listeners", []):
            p.kill()
            p.wait(timeout=5)
        for node in self.nodes.values():
            for pidfile in (node.dir / "sshd.pid", node.dir / "ovs" / "ovs-vswitchd.pid",
                            node.dir / "ovs" / "ovsdb-server.pid"):
                pid = _read_pid(pidfile)
                if pid:
                    _kill(pid)
            # Anything else still running inside a netns this lab created (e.g. sshd session
            # children) was started by this lab: stop it by pid.
            for p in sh("ip", "netns", "pids", node.ns, check=False).stdout.split():
                _kill(int(p))
            sh("ip", "netns", "del", node.ns, check=False)
        for link in self._links:
            sh("ip", "link", "del", link, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)


TCP_CODE = ("import socket,sys\ns=socket.socket();s.settimeout(float(sys.argv[3]))\n"
            "if sys.argv[4]: s.bind((sys.argv[4],0))\n"
            "try:\n s.connect((sys.argv[1],int(sys.argv[2])));print('ok')\nexcept Exception as e:\n print('fail',e)")


def tcp_connects(ns: str, dst_ip: str, port: int, timeout_s: float = 1.5, bind: str = "") -> bool:
    p = sh("python3", "-c", TCP_CODE, dst_ip, str(port), str(timeout_s), bind, ns=ns, check=False,
           timeout=timeout_s + 5)
    return p.stdout.startswith("ok")


def listen(ns: str, port: int) -> subprocess.Popen:
    code = ("import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
            "s.bind(('0.0.0.0',int(sys.argv[1])));s.listen(64);print('listening',flush=True)\n"
            "while True:\n c,_=s.accept();c.close()")
    p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", code, str(port)],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    wait_listening(p, f"{ns}:{port}")
    return p


def wait_listening(p: subprocess.Popen, what: str, timeout_s: float = 10.0) -> None:
    """Block until the listener printed `listening` (its socket is bound and listening), so a
    later "refused" check can never pass only because the listener was not up yet."""
    ready = threading.Event()

    def read() -> None:
        if p.stdout is not None and p.stdout.readline().strip() == "listening":
            ready.set()
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout_s):
        p.kill()
        raise AssertionError(f"listener {what} did not start within {timeout_s}s (rc={p.poll()})")


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _kill(pid: int, timeout_s: float = 3) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
