"""Workload files on hosts (compile/workload_files.py, drivers/ansible/files.py): the compiled
specs, what the driver reads back from a host's files, what it installs, and that key
material never appears in specs, details or the observe output."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from reconciler.compile import compile_repo
from reconciler.compile.workload_files import BOOTSTRAP, BUNDLE, CERT, PROVIDERS_OK, cert_spec
from reconciler.drivers.ansible import files
from reconciler.intents.validate import load_repo
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.xds.ca import CA
from reconciler.xds.paths import WORKLOAD_DIR

ROOT = Path(__file__).resolve().parents[2]
API_ID = "spiffe://corp.example/shop/api"


@pytest.fixture
def ca(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONCILER_CA_DIR", str(tmp_path / "ca"))
    return CA.load_or_create(tmp_path / "ca", "corp.example")


def _pub(key_pem: bytes) -> str:
    return subprocess.run(["openssl", "pkey", "-pubout"], input=key_pem, capture_output=True,
                          check=True).stdout.decode()


def _observed(ca: CA, cert: bytes, key: bytes, key_mode: str = "600", providers=("api.shop",)) -> str:
    """What OBSERVE prints for a host holding bootstrap, bundle and api.shop's pair."""
    doc = {"xds_servers": [{"server_uri": "10.0.0.1:18001", "channel_creds": [{"type": "insecure"}]}],
           "node": {"id": "h3"}, "server_listener_resource_name_template": "grpc/server?xds.resource."
                                                                        "listening_address=%s",
           "certificate_providers": {p: {"plugin_name": "file_watcher", "config": {
               "certificate_file": f"{WORKLOAD_DIR}/certs/{p}.pem", "private_key_file": f"{WORKLOAD_DIR}/certs/{p}.key",
               "ca_certificate_file": f"{WORKLOAD_DIR}/certs/ca.pem"}} for p in providers}}
    return "\n".join([f"{files.MARK} {WORKLOAD_DIR}/bootstrap.json 644", json.dumps(doc),
                      f"{files.MARK} {WORKLOAD_DIR}/certs/api.shop.pem 644", cert.decode(),
                      f"{files.MARK} {WORKLOAD_DIR}/certs/ca.pem 644", ca.ca_pem.decode(),
                      f"{files.MARK} {WORKLOAD_DIR}/certs/api.shop.key {key_mode}", _pub(key)])


def _by_kind(resources):
    return {(r.key.kind, r.key.name): r.spec for r in resources}


def test_examples_compile_bootstrap_bundle_and_one_cert_per_service_instance():
    desired = compile_repo(load_repo(str(ROOT / "examples/intents"), None))
    h4 = {(r.key.kind, r.key.name): r for r in desired if r.key.layer is Layer.HOST and r.key.target == "h4"
          and r.key.kind in files.KINDS}
    assert set(h4) == {(BOOTSTRAP, "bootstrap.json"), (BUNDLE, "ca.pem"), (CERT, "collector.analytics"),
                       (CERT, "dash.analytics")}
    assert h4[(CERT, "dash.analytics")].app == "analytics" and h4[(BOOTSTRAP, "bootstrap.json")].app == ""
    assert h4[(BOOTSTRAP, "bootstrap.json")].spec["ads"] == "172.20.20.1:18001"


def test_a_healthy_host_reads_back_as_compiled(ca):
    cert, key = ca.issue(API_ID)
    got = _by_kind(files.parse("h3", _observed(ca, cert, key)))
    assert got[(CERT, "api.shop")] == cert_spec(API_ID, "api.shop")
    assert got[(BUNDLE, "ca.pem")]["issuer"] == "reconciler-ca"
    assert got[(BOOTSTRAP, "bootstrap.json")]["node_id"] == "h3"


def test_drift_in_the_files_shows_as_properties_never_as_key_material(ca):
    cert, key = ca.issue(API_ID)
    _, other_key = ca.issue(API_ID)
    got = _by_kind(files.parse("h3", _observed(ca, cert, other_key, key_mode="644", providers=())))
    spec = got[(CERT, "api.shop")]
    assert spec["key_pair"] == "mismatch" and spec["key_mode"] == "0644"
    assert got[(BOOTSTRAP, "bootstrap.json")]["providers"] == "missing api.shop"   # the bootstrap's property
    foreign = CA.create("corp.example")
    fcert, fkey = foreign.issue(API_ID)
    spec = _by_kind(files.parse("h3", _observed(ca, fcert, fkey)))[(CERT, "api.shop")]
    assert spec["issuer"].startswith("other") and spec["key_pair"] == "matches"
    short, skey = ca.issue(API_ID, days=2)
    spec = _by_kind(files.parse("h3", _observed(ca, short, skey)))[(CERT, "api.shop")]
    assert spec["expiry"].startswith("renew: expires ")
    assert "PRIVATE" not in json.dumps(spec)


def _desired(node: str = "h3") -> list[Resource]:
    return [Resource(ResourceKey(Layer.HOST, node, BOOTSTRAP, "bootstrap.json"), {
                "path": f"{WORKLOAD_DIR}/bootstrap.json", "node_id": node, "ads": "10.0.0.1:18001",
                "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
                "channel_creds": "insecure", "providers": PROVIDERS_OK}, ""),
            Resource(ResourceKey(Layer.HOST, node, BUNDLE, "ca.pem"),
                     {"path": f"{WORKLOAD_DIR}/certs/ca.pem", "issuer": "reconciler-ca"}, ""),
            Resource(ResourceKey(Layer.HOST, node, CERT, "api.shop"), cert_spec(API_ID, "api.shop"), "shop")]


def test_render_installs_what_is_missing_with_keys_0600_and_details_without_content(ca, tmp_path):
    want = _desired()
    out = files.render(want, want, [], prune=False)
    assert out.writes == 4 and all("BEGIN" not in d for d in out.details)
    bundle = json.loads(out.bundle)
    modes = {f["path"].rsplit("/", 1)[1]: f["mode"] for f in bundle["write"]}
    assert modes == {"api.shop.pem": "0644", "api.shop.key": "0600", "ca.pem": "0644", "bootstrap.json": "0644"}
    assert bundle["write"][-1]["path"].endswith("bootstrap.json")   # last: certificates are there first
    doc = json.loads(bundle["write"][-1]["content"])
    assert doc["certificate_providers"]["api.shop"]["config"]["private_key_file"] == f"{WORKLOAD_DIR}/certs/api.shop.key"
    # the installer on a scratch root: atomic writes, modes, and paths outside the root refused
    root = tmp_path / "root"
    bundle["root"] = str(root)
    for f in bundle["write"]:
        f["path"] = f["path"].replace(WORKLOAD_DIR, str(root))
    subprocess.run([sys.executable, "-c", files.INSTALLER], input=json.dumps(bundle), text=True, check=True)
    assert os.stat(root / "certs" / "api.shop.key").st_mode & 0o777 == 0o600
    bundle["write"] = [{"path": str(tmp_path / "elsewhere"), "mode": "0644", "content": "x"}]
    cp = subprocess.run([sys.executable, "-c", files.INSTALLER], input=json.dumps(bundle), text=True,
                        capture_output=True)
    assert cp.returncode != 0 and not (tmp_path / "elsewhere").exists()


def test_render_writes_nothing_when_the_host_matches(ca):
    cert, key = ca.issue(API_ID)
    observed = files.parse("h3", _observed(ca, cert, key))
    assert files.render(_desired(), _desired(), observed, prune=False).writes == 0


def test_playbooks_run_the_driver_observe_snippet_verbatim():
    for book in ("observe.yml", "apply_host.yml"):
        text = (ROOT / "playbooks" / book).read_text()
        line = next(ln for ln in text.splitlines() if "ni_workload_observe: !unsafe" in ln)
        assert yaml.safe_load(line.split("!unsafe", 1)[1]) == files.OBSERVE, book
