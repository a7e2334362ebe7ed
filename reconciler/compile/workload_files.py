"""Compile what a proxyless gRPC workload needs on its host: xDS bootstrap and SPIFFE files.

Contract: pure; host-layer resources, only for hosts of the `sidecars` group whose inventory
names the ADS server (`netintent_ads`, host:port as seen from the host). All files live in
WORKLOAD_DIR on the host (reconciler.xds.bootstrap):
  fabric (app ''), per such host:
    xds-bootstrap  `bootstrap.json`  {path, node_id, ads, server_listener_resource_name_template,
                                      channel_creds, providers: "one per certificate"}: the
                                      document lists one file_watcher certificate provider per
                                      certificate on the host (the driver's installer derives the
                                      list from the files, whoever writes)
    trust-bundle   `ca.pem`          {path, issuer: "reconciler-ca"}: the CA certificate
  per application, per host running an instance of one of its services:
    workload-cert  `<service>.<app>` {cert, key, identity, issuer: "reconciler-ca",
                                      key_pair: "matches", key_mode: "0600", expiry: "ok"}
Whether the bootstrap lists a certificate is a property of the bootstrap (the fabric's), not
of the certificate (its app's): apps and the fabric may be reconciled by different daemons
(shards), and an app's run must converge without writing the fabric's file.
A spec describes properties, never key material: the driver observes them (identity and
expiry from the certificate, the key only as its public half, modes from stat) and issues a
new key and certificate from the reconciler's CA when any differs: a key replaced by hand
(`key_pair: mismatch`), a certificate from another issuer, a key readable by others, or one
within its renewal window (`expiry: "renew: ..."`, reported before it expires).
"""
from __future__ import annotations

from reconciler.compile.context import CompileContext, ServiceRef, iter_instances
from reconciler.compile.sidecar import SIDECARS_GROUP, node_of, provider_name
from reconciler.intents.models import Application
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.names import SERVER_LISTENER_TEMPLATE
from reconciler.xds.paths import WORKLOAD_DIR

ISSUER = "reconciler-ca"
BOOTSTRAP, BUNDLE, CERT = "xds-bootstrap", "trust-bundle", "workload-cert"
KINDS = (BOOTSTRAP, BUNDLE, CERT)
BOOTSTRAP_NAME, BUNDLE_NAME = "bootstrap.json", "ca.pem"
PROVIDERS_OK = "one per certificate"


def ads_of(ctx: CompileContext, host: str) -> str | None:
    """The ADS address a sidecar host's bootstrap names; None: its files are not managed."""
    if not ctx.inventory.in_group(host, SIDECARS_GROUP):
        return None
    v = ctx.hvar(host, "netintent_ads")
    return str(v) if v else None


def cert_paths(provider: str) -> tuple[str, str]:
    return f"{WORKLOAD_DIR}/certs/{provider}.pem", f"{WORKLOAD_DIR}/certs/{provider}.key"


def bundle_path() -> str:
    return f"{WORKLOAD_DIR}/certs/{BUNDLE_NAME}"


def _key(host: str, kind: str, name: str) -> ResourceKey:
    return ResourceKey(Layer.HOST, host, kind, name)


def compile_fabric(ctx: CompileContext) -> list[Resource]:
    out = []
    for h in ctx.inventory.group(SIDECARS_GROUP):
        ads = ads_of(ctx, h.name)
        node = node_of(ctx, h.name)
        if ads is None or node is None:
            continue
        out.append(Resource(_key(h.name, BOOTSTRAP, BOOTSTRAP_NAME), {
            "path": f"{WORKLOAD_DIR}/{BOOTSTRAP_NAME}", "node_id": node, "ads": ads,
            "server_listener_resource_name_template": SERVER_LISTENER_TEMPLATE,
            "channel_creds": "insecure", "providers": PROVIDERS_OK}, ""))
        out.append(Resource(_key(h.name, BUNDLE, BUNDLE_NAME), {"path": bundle_path(), "issuer": ISSUER}, ""))
    return out


def cert_spec(identity: str, provider: str) -> dict:
    cert, key = cert_paths(provider)
    return {"cert": cert, "key": key, "identity": identity, "issuer": ISSUER, "key_pair": "matches",
            "key_mode": "0600", "expiry": "ok"}


def compile_app(app: Application, ctx: CompileContext) -> list[Resource]:
    out: dict[ResourceKey, Resource] = {}
    for sname, _svc, inst in iter_instances(app):
        if ads_of(ctx, inst.host) is None:
            continue
        prov = provider_name(app.name, sname)
        key = _key(inst.host, CERT, prov)
        out.setdefault(key, Resource(key, cert_spec(ctx.identity(ServiceRef(app.name, sname)), prov), app.name))
    return [out[k] for k in sorted(out, key=ResourceKey.sort_key)]
