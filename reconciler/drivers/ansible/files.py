"""Host driver part for workload files: xDS bootstrap, SPIFFE certificates, trust bundle.

Contract (shapes in reconciler/compile/workload_files.py; wired into drivers/ansible/host.py):
- OBSERVE is the constant shell snippet the host observe runs (4th `@@NI@@` section): for each
  file of WORKLOAD_DIR it prints a `@@NF@@ PATH MODE` line, then the file, except private keys,
  of which only the public half is printed (`openssl pkey -pubout`): key material never leaves
  the host when observing.
- `parse(target, text)` turns that into xds-bootstrap / trust-bundle / workload-cert resources
  (all owned: WORKLOAD_DIR is the reconciler's) whose specs hold properties: identity, issuer
  (the reconciler's CA or not), key pair match, key mode, expiry (`renew: expires ...` within
  RENEW_BEFORE of the end), and for the bootstrap whether it lists one provider per certificate
  pair on the host (`providers`).
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
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from reconciler.compile.workload_files import (
    BOOTSTRAP,
    BOOTSTRAP_NAME,
    BUNDLE,
    BUNDLE_NAME,
    CERT,
    ISSUER,
    KINDS,
    PROVIDERS_OK,
    bundle_path,
)
from reconciler.model import Layer, Resource, ResourceKey
from reconciler.xds.paths import WORKLOAD_DIR

RENEW_BEFORE = dt.timedelta(days=10)   # certificates are issued for 30 days
_APP_NAME = re.compile(r"[a-z][a-z0-9-]{0,30}")   # schemas/application.schema.json name
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
pv = b.get("providers")
if pv and ok(pv["bootstrap"]) and os.path.isfile(pv["bootstrap"]):
    d = pv["certs"].rstrip("/") + "/"
    names = sorted(n[:-4] for n in os.listdir(d) if n.endswith(".pem") and d + n != pv["ca"]
                   and os.path.isfile(d + n[:-4] + ".key")) if os.path.isdir(d) else []
    want = {n: {"plugin_name": "file_watcher", "config": {
        "certificate_file": d + n + ".pem", "private_key_file": d + n + ".key",
        "ca_certificate_file": pv["ca"], "refresh_interval": pv["refresh"]}} for n in names}
    with open(pv["bootstrap"]) as f:
        doc = json.load(f)
    if doc.get("certificate_providers") != want:
        doc["certificate_providers"] = want
        tmp = pv["bootstrap"] + ".ni-tmp"
        with open(tmp, "w") as out:
            out.write(json.dumps(doc, indent=2) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, pv["bootstrap"])
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


def _cert_props(name: str, blocks: dict, ca: Any, now: dt.datetime) -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from reconciler.compile.workload_files import cert_paths
    cert_p, key_p = cert_paths(name)
    spec = {"cert": cert_p, "key": key_p, "identity": "", "issuer": "missing", "key_pair": "missing",
            "key_mode": "missing", "expiry": "missing"}
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
    return spec


def _providers_prop(providers: dict, pairs: set[str]) -> str:
    """PROVIDERS_OK when the bootstrap lists exactly the certificate pairs on the host (what the
    installer writes), else what differs."""
    from reconciler.compile.workload_files import cert_paths
    ok = set()
    for name, prov in providers.items():
        if not isinstance(prov, dict):
            continue
        cfg = prov.get("config") or {}
        if name in pairs and isinstance(cfg, dict) and prov.get("plugin_name") == "file_watcher" and (
                cfg.get("certificate_file"), cfg.get("private_key_file"),
                cfg.get("ca_certificate_file")) == (*cert_paths(name), bundle_path()):
            ok.add(name)
    missing, extra = sorted(pairs - ok), sorted(set(providers) - ok)
    if not missing and not extra:
        return PROVIDERS_OK
    return "; ".join(part for part in (f"missing {', '.join(missing[:5])}" if missing else "",
                                       f"wrong or extra {', '.join(extra[:5])}" if extra else "") if part)


def _bootstrap_spec(path: str, text: str) -> tuple[dict, dict]:
    spec = {"path": path, "node_id": "", "ads": "", "server_listener_resource_name_template": "",
            "channel_creds": "", "providers": ""}
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
        spec["providers"] = _providers_prop(providers, _pairs(blocks))
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
                            _cert_props(name, blocks, ca, now), app_of_cert(name)))
    return out


def _pairs(blocks: dict) -> set[str]:
    """Certificates on the host with both files (`<name>.pem` and `<name>.key`; not the bundle)."""
    d = f"{WORKLOAD_DIR}/certs/"
    return {p[len(d):-4] for p in blocks if p.startswith(d) and p.endswith(".pem") and p != bundle_path()
            and "/" not in p[len(d):] and p[:-4] + ".key" in blocks}


def app_of_cert(name: str) -> str:
    """The app a certificate file belongs to: `<service>.<app>` (provider_name; neither name has a
    dot). Observed resources must carry the app that wants them: a run scoped to some apps
    (self-heal, retry, a shard's apps) only sees observed resources of those apps, and a cert
    read back as the fabric's was invisible to its app's run, so it was issued again on every run."""
    app = name.rsplit(".", 1)[1] if "." in name else ""
    return app if _APP_NAME.fullmatch(app) else ""


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
    boot_differs = False
    for key in sorted(d, key=lambda k: (KINDS.index(k.kind), k.name)):
        have = o.get(key)
        if have is not None and have.spec == d[key].spec:
            continue
        details.append(f"{'update' if have is not None else 'create'} {key.kind} {key.name}")
        boot_differs = boot_differs or key.kind == BOOTSTRAP   # alone (a node id edited by hand) it is a write too
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
    if (write or remove or boot_differs) and boot is not None:
        write.append({"path": boot.spec["path"], "mode": "0644", "content": _bootstrap_doc(boot.spec, certs_all)})
    if not write and not remove:
        return Files(details=details)
    # The bootstrap lists one provider per certificate ON THE HOST, whoever wrote it: the installer
    # derives the list from the files. A run scoped to some apps (a shard's, a self-heal's) only
    # knows its own certificates, and a list rendered from them dropped every other app's provider.
    providers = {"bootstrap": f"{WORKLOAD_DIR}/{BOOTSTRAP_NAME}", "certs": f"{WORKLOAD_DIR}/certs",
                 "ca": bundle_path(), "refresh": "5s"}
    bundle = json.dumps({"root": WORKLOAD_DIR, "write": write, "remove": remove, "providers": providers})
    return Files(bundle, len(write) + len(remove), details)


def _issuing_ca(identity: str):
    """The one CA of the deployment. Every daemon of it (shard members, leader and standby) must
    issue from the same CA dir, or each one's certificates read back as "other" to the rest and
    are issued again forever. Created under a file lock: two daemons creating it at once could
    otherwise leave one's key next to the other's certificate."""
    import fcntl

    from reconciler.xds.ca import CA, default_ca_dir
    trust_domain = identity.removeprefix("spiffe://").split("/", 1)[0] or "netintent"
    d = default_ca_dir()
    ca = CA.load(d)
    if ca is not None:
        return ca
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(d / ".create.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return CA.load_or_create(d, trust_domain)


def _bootstrap_doc(spec: Any, certs: dict[str, Resource]) -> str:
    from reconciler.xds.bootstrap import bootstrap
    from reconciler.xds.ca import Identity
    idents = {name: Identity(r.spec["identity"], r.spec["cert"], r.spec["key"], bundle_path())
              for name, r in certs.items()}
    doc = bootstrap(spec["node_id"], spec["ads"], idents)
    doc["server_listener_resource_name_template"] = spec["server_listener_resource_name_template"]
    return json.dumps(doc, indent=2) + "\n"
