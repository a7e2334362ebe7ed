"""Host driver part for workload files: xDS bootstrap, SPIFFE certificates, trust bundle.

Contract (shapes in reconciler/compile/workload_files.py; wired into drivers/ansible/host.py):
- OBSERVE is the constant shell snippet the host observe runs (4th `@@NI@@` section): for each
  file of WORKLOAD_DIR it prints a `@@NF@@ PATH MODE` line, then the file, except private keys,
  of which only the public half is printed (`openssl pkey -pubout`): key material never leaves
  the host when observing.
- `parse(target, text)` turns that into xds-bootstrap / trust-bundle / workload-cert resources
  (all owned: WORKLOAD_DIR is the reconciler's) whose specs hold properties: identity, issuer
  (the reconciler's CA or not), key pair match, key mode, expiry (`renew: expires ...` within
  RENEW_BEFORE of the end), and whether the bootstrap lists the certificate's provider.
- `render(plan, scoped_desired, scoped_observed)` -> Files: the JSON bundle the apply's
  `files` step installs (INSTALLER, run by the host's python3 from stdin: atomic writes, keys
  created 0600, only paths under WORKLOAD_DIR), the count of writes and details naming files
  (never content). A certificate that differs in any property is issued again (new key) from
  the reconciler's CA (reconciler.xds.ca.default_ca_dir); the bootstrap is rendered again
  whenever anything of the host's workload files changes. The bundle holds private keys: it
  only lives in the run's 0700 temp dir and the module's no_log parameter.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from reconciler.compile.workload_files import BOOTSTRAP, BUNDLE, BUNDLE_NAME, CERT, ISSUER, KINDS, bundle_path
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.xds.paths import WORKLOAD_DIR

RENEW_BEFORE = dt.timedelta(days=10)   # certificates are issued for 30 days
MARK = "@@NF@@"
OBSERVE = (f"for f in {WORKLOAD_DIR}/bootstrap.json {WORKLOAD_DIR}/certs/*.pem {WORKLOAD_DIR}/certs/*.key; do "
           f"[ -f \"$f\" ] || continue; echo \"{MARK} $f $(stat -c %a \"$f\")\"; "
           "case \"$f\" in *.key) openssl pkey -in \"$f\" -pubout 2>/dev/null || echo unreadable;; "
           "*) cat \"$f\"; echo;; esac; done; true")

# Runs on the host (python3 -c), the bundle on stdin. Constant: nothing from intents is code here.
INSTALLER = r'''
import json, os, sys
b = json.load(sys.stdin)
root = b["root"].rstrip("/") + "/"
def ok(p):
    return p.startswith(root) and ".." not in p.split("/")
for f in b["write"]:
    p = f["path"]
    if not ok(p):
        sys.exit("refused path " + p)
    os.makedirs(os.path.dirname(p), 0o755, exist_ok=True)
    tmp = p + ".ni-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, int(f["mode"], 8))
    with os.fdopen(fd, "w") as out:
        out.write(f["content"])
    os.chmod(tmp, int(f["mode"], 8))
    os.replace(tmp, p)
for p in b["remove"]:
    if ok(p) and os.path.isfile(p):
        os.unlink(p)
'''


def _blocks(text: str) -> dict[str, tuple[str, str]]:
    """path -> (mode, content) from the OBSERVE output."""
    out: dict[str, tuple[str, str]] = {}
    path, mode, lines = "", "", []   # type: ignore[var-annotated]
    for line in text.splitlines():
        if line.startswith(MARK + " "):
            if path:
                out[path] = (mode, "\n".join(lines))
            parts = line.split()
            path, mode, lines = parts[1], parts[2] if len(parts) > 2 else "", []
        elif path:
            lines.append(line)
    if path:
        out[path] = (mode, "\n".join(lines))
    return out


def _ca():
    from reconciler.xds.ca import CA, default_ca_dir
    return CA.load(default_ca_dir())


def _issuer(cert: Any, ca: Any) -> str:
    if ca is not None:
        try:
            ca.cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                        _ec_sig(cert))
            return ISSUER
        except Exception:  # any verification failure: not ours
            pass
    return f"other ({cert.issuer.rfc4514_string()[:60]})"


def _ec_sig(cert: Any) -> Any:
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.ECDSA(cert.signature_hash_algorithm)


def _pub_pem(key_or_cert: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization
    pub = key_or_cert.public_key() if hasattr(key_or_cert, "public_key") else key_or_cert
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _cert_props(name: str, blocks: dict, providers: dict, ca: Any, now: dt.datetime) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from reconciler.compile.workload_files import cert_paths
    cert_p, key_p = cert_paths(name)
    spec = {"cert": cert_p, "key": key_p, "identity": "", "issuer": "missing", "key_pair": "missing",
            "key_mode": "missing", "expiry": "missing", "provider": "missing"}
    cert = None
    if cert_p in blocks:
        try:
            cert = x509.load_pem_x509_certificate(blocks[cert_p][1].encode())
        except ValueError:
            spec.update(issuer="unreadable", expiry="unreadable")
    if cert is not None:
        try:
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            ids = [u for u in san.get_values_for_type(x509.UniformResourceIdentifier) if u.startswith("spiffe://")]
        except x509.ExtensionNotFound:
            ids = []
        end = cert.not_valid_after_utc
        spec.update(identity=",".join(ids), issuer=_issuer(cert, ca),
                    expiry="ok" if end - now > RENEW_BEFORE else f"renew: expires {end:%Y-%m-%dT%H:%MZ}")
    if key_p in blocks:
        mode, pub = blocks[key_p]
        spec["key_mode"] = mode.zfill(4)
        try:
            key_pub = serialization.load_pem_public_key(pub.encode())
            spec["key_pair"] = "matches" if cert is not None and _pub_pem(key_pub) == _pub_pem(cert) \
                else "mismatch"
        except ValueError:
            spec["key_pair"] = "unreadable"
    prov = providers.get(name) or {}
    cfg = prov.get("config") or {}
    if prov.get("plugin_name") == "file_watcher" and (cfg.get("certificate_file"), cfg.get("private_key_file"),
                                                      cfg.get("ca_certificate_file")) == (cert_p, key_p, bundle_path()):
        spec["provider"] = "file_watcher"
    return spec


def _bootstrap_spec(path: str, text: str) -> tuple[dict, dict]:
    spec = {"path": path, "node_id": "", "ads": "", "server_listener_resource_name_template": "",
            "channel_creds": ""}
    try:
        doc = json.loads(text)
        srv = (doc.get("xds_servers") or [{}])[0]
        spec.update(node_id=str((doc.get("node") or {}).get("id", "")), ads=str(srv.get("server_uri", "")),
                    server_listener_resource_name_template=str(doc.get("server_listener_resource_name_template", "")),
                    channel_creds=str(((srv.get("channel_creds") or [{}])[0]).get("type", "")))
        return spec, dict(doc.get("certificate_providers") or {})
    except (ValueError, AttributeError, IndexError, TypeError):
        spec["node_id"] = "unreadable"
        return spec, {}


def parse(target: str, text: str) -> list[Resource]:
    blocks = _blocks(text)
    if not blocks:
        return []
    out: list[Resource] = []
    providers: dict = {}
    boot = f"{WORKLOAD_DIR}/bootstrap.json"
    if boot in blocks:
        spec, providers = _bootstrap_spec(boot, blocks[boot][1])
        out.append(Resource(ResourceKey(Layer.HOST, target, BOOTSTRAP, "bootstrap.json"), spec, ""))
    ca = _ca()
    if bundle_path() in blocks:
        issuer = "unreadable"
        try:
            from cryptography import x509
            got = x509.load_pem_x509_certificate(blocks[bundle_path()][1].encode())
            issuer = ISSUER if ca is not None and got == ca.cert else \
                f"other (sha256 {hashlib.sha256(got.tbs_certificate_bytes).hexdigest()[:16]})"
        except ValueError:
            pass
        out.append(Resource(ResourceKey(Layer.HOST, target, BUNDLE, BUNDLE_NAME),
                            {"path": bundle_path(), "issuer": issuer}, ""))
    certs = {p.rsplit("/", 1)[1].rsplit(".", 1)[0] for p in blocks if p.startswith(f"{WORKLOAD_DIR}/certs/")}
    now = dt.datetime.now(dt.timezone.utc)
    for name in sorted(certs - {BUNDLE_NAME.rsplit(".", 1)[0]}):
        out.append(Resource(ResourceKey(Layer.HOST, target, CERT, name),
                            _cert_props(name, blocks, providers, ca, now), ""))
    return out


@dataclass
class Files:
    bundle: str = ""
    writes: int = 0
    details: list[str] = field(default_factory=list)


def render(all_desired: Iterable[Resource], desired: Iterable[Resource], observed: Iterable[Resource],
           prune: bool) -> Files:
    """What to install on one host: `desired`/`observed` are the plan's (scoped) resources."""
    d = {r.key: r for r in desired if r.key.kind in KINDS}
    o = {r.key: r for r in observed if r.key.kind in KINDS}
    write: list[dict] = []
    remove: list[str] = []
    details: list[str] = []
    certs_all = {r.key.name: r for r in all_desired if r.key.kind == CERT}
    boot = next((r for r in all_desired if r.key.kind == BOOTSTRAP), None)
    ca = None
    for key in sorted(d, key=lambda k: (KINDS.index(k.kind), k.name)):
        have = o.get(key)
        if have is not None and have.spec == d[key].spec:
            continue
        details.append(f"{'update' if have is not None else 'create'} {key.kind} {key.name}")
        if key.kind == CERT:
            ca = ca or _issuing_ca(d[key].spec["identity"])
            cert, pem_key = ca.issue(d[key].spec["identity"])
            write += [{"path": d[key].spec["cert"], "mode": "0644", "content": cert.decode()},
                      {"path": d[key].spec["key"], "mode": "0600", "content": pem_key.decode()}]
        elif key.kind == BUNDLE:
            ca = ca or _issuing_ca(next(iter(certs_all.values())).spec["identity"] if certs_all else "")
            write.append({"path": d[key].spec["path"], "mode": "0644", "content": ca.ca_pem.decode()})
    for key, have in sorted(o.items()):
        if key in d or not prune:
            continue
        details.append(f"delete {key.kind} {key.name} (prune)")
        remove += [have.spec["cert"], have.spec["key"]] if key.kind == CERT else [have.spec["path"]]
    if (write or remove) and boot is not None:
        write.append({"path": boot.spec["path"], "mode": "0644", "content": _bootstrap_doc(boot.spec, certs_all)})
    if not write and not remove:
        return Files(details=details)
    bundle = json.dumps({"root": WORKLOAD_DIR, "write": write, "remove": remove})
    return Files(bundle, len(write) + len(remove), details)


def _issuing_ca(identity: str):
    from reconciler.xds.ca import CA, default_ca_dir
    trust_domain = identity.removeprefix("spiffe://").split("/", 1)[0] or "netintent"
    return CA.load_or_create(default_ca_dir(), trust_domain)


def _bootstrap_doc(spec: Any, certs: dict[str, Resource]) -> str:
    from reconciler.xds.bootstrap import bootstrap
    from reconciler.xds.ca import Identity
    idents = {name: Identity(r.spec["identity"], r.spec["cert"], r.spec["key"], bundle_path())
              for name, r in certs.items()}
    doc = bootstrap(spec["node_id"], spec["ads"], idents)
    doc["server_listener_resource_name_template"] = spec["server_listener_resource_name_template"]
    return json.dumps(doc, indent=2) + "\n"
