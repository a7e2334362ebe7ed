"""Workload files under runs scoped to some apps (shard members, self-heal, retry): a
certificate reads back as its app's, and the bootstrap keeps one provider per certificate on
the host whoever writes, so members owning different apps of one host do not undo each other."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reconciler.compile.workload_files import BOOTSTRAP, BUNDLE, CERT, PROVIDERS_OK, cert_spec
from reconciler.drivers.ansible import files
from reconciler.engine import _filter_apps
from reconciler.model import Layer, ObservedState, Resource, ResourceKey
from reconciler.xds.ca import CA
from reconciler.xds.paths import WORKLOAD_DIR

API, DASH = "spiffe://corp.example/shop/api", "spiffe://corp.example/analytics/dash"


@pytest.fixture
def ca(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONCILER_CA_DIR", str(tmp_path / "ca"))
    return CA.load_or_create(tmp_path / "ca", "corp.example")


def _boot(node: str = "h3") -> Resource:
    return Resource(ResourceKey(Layer.HOST, "h3", BOOTSTRAP, "bootstrap.json"), {
        "path": f"{WORKLOAD_DIR}/bootstrap.json", "node_id": node, "ads": "10.0.0.1:18001",
        "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%s",
        "channel_creds": "insecure", "providers": PROVIDERS_OK}, "")


def _bundle() -> Resource:
    return Resource(ResourceKey(Layer.HOST, "h3", BUNDLE, "ca.pem"),
                    {"path": f"{WORKLOAD_DIR}/certs/ca.pem", "issuer": "reconciler-ca"}, "")


def _cert(identity: str, prov: str, app: str) -> Resource:
    return Resource(ResourceKey(Layer.HOST, "h3", CERT, prov), cert_spec(identity, prov), app)


def _observe(root) -> str:
    """The driver's OBSERVE snippet run against a scratch root instead of WORKLOAD_DIR."""
    script = files.OBSERVE.replace(WORKLOAD_DIR, str(root))
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    return out.replace(str(root), WORKLOAD_DIR)


def _install(bundle_json: str, root) -> None:
    text = bundle_json.replace(WORKLOAD_DIR, str(root))
    subprocess.run([sys.executable, "-c", files.INSTALLER], input=text, text=True, check=True)


def _by_key(resources):
    return {(r.key.kind, r.key.name): r for r in resources}


def test_a_certificate_reads_back_as_its_apps_and_survives_an_app_filter(ca, tmp_path):
    want = [_boot(), _bundle(), _cert(API, "api.shop", "shop")]
    _install(files.render(want, want, [], prune=False).bundle, tmp_path)
    got = files.parse("h3", _observe(tmp_path))
    assert {(r.key.kind, r.key.name): r.app for r in got} == {
        (BOOTSTRAP, "bootstrap.json"): "", (BUNDLE, "ca.pem"): "", (CERT, "api.shop"): "shop"}
    # a run scoped to shop (a shard member owning shop, a self-heal of shop) still sees its certificate
    scoped = _filter_apps(ObservedState.of(got), {"shop"})
    assert [r.key.name for r in scoped] == ["api.shop"]
    assert files.app_of_cert("api.shop") == "shop" and files.app_of_cert("stray") == ""
    assert files.app_of_cert("x.Not_An_App") == ""


def test_members_owning_different_apps_of_one_host_keep_each_others_providers(ca, tmp_path):
    fabric, shop, analytics = [_boot(), _bundle()], [_cert(API, "api.shop", "shop")], \
        [_cert(DASH, "dash.analytics", "analytics")]
    # each member renders from its own apps only (the engine's app filter), in turn, on one host
    for scope in (fabric, shop, analytics):
        observed = [r for r in files.parse("h3", _observe(tmp_path)) if r.app in {x.app for x in scope}]
        out = files.render(scope, scope, observed, prune=False)
        if out.bundle:
            _install(out.bundle, tmp_path)
    doc = json.loads((tmp_path / "bootstrap.json").read_text())
    assert sorted(doc["certificate_providers"]) == ["api.shop", "dash.analytics"]
    # and now every member reads its part back as desired: nothing to write for anyone
    observed = files.parse("h3", _observe(tmp_path))
    for scope in (fabric, shop, analytics):
        mine = [r for r in observed if r.app in {x.app for x in scope}]
        assert files.render(scope, scope, mine, prune=False).writes == 0, scope
    # the fabric's owner renders the bootstrap again (its node changed): the other apps' providers stay
    moved = [_boot("h3-new"), _bundle()]
    out = files.render(moved, moved, [r for r in observed if r.app == ""], prune=False)
    _install(out.bundle, tmp_path)
    doc = json.loads((tmp_path / "bootstrap.json").read_text())
    assert doc["node"]["id"] == "h3-new" and sorted(doc["certificate_providers"]) == ["api.shop", "dash.analytics"]
    assert all(p["config"]["ca_certificate_file"] == f"{WORKLOAD_DIR}/certs/ca.pem".replace(WORKLOAD_DIR, str(tmp_path))
               for p in doc["certificate_providers"].values())


def test_an_apps_certificate_converges_before_the_fabric_wrote_the_bootstrap(ca, tmp_path):
    """The app's owner runs first (another member owns the fabric): its run converges without the
    bootstrap; the fabric's owner then writes a bootstrap that lists it."""
    shop, fabric = [_cert(API, "api.shop", "shop")], [_boot(), _bundle()]
    _install(files.render(shop, shop, [], prune=False).bundle, tmp_path)
    assert not (tmp_path / "bootstrap.json").exists()
    mine = [r for r in files.parse("h3", _observe(tmp_path)) if r.app == "shop"]
    assert files.render(shop, shop, mine, prune=False).writes == 0
    _install(files.render(fabric, fabric, [], prune=False).bundle, tmp_path)
    doc = json.loads((tmp_path / "bootstrap.json").read_text())
    assert sorted(doc["certificate_providers"]) == ["api.shop"]
    got = _by_key(files.parse("h3", _observe(tmp_path)))
    assert got[(BOOTSTRAP, "bootstrap.json")].spec["providers"] == PROVIDERS_OK
