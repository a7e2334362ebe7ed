"""gRPC xDS bootstrap documents for the lab's workloads.

Contract: `bootstrap(node_id, ads_uri, identities, ads_tls)` is pure and returns the JSON
document grpcio reads from GRPC_XDS_BOOTSTRAP. It always carries what grpcio needs to not
fail silently: non-empty `channel_creds`, `server_listener_resource_name_template` (without
it an xDS server runs as a plain server), and one `file_watcher` certificate provider per
identity, named as compile names them (`<service>.<app>`). `ads_tls` = {"ca": path,
"cert": path, "key": path} switches the ADS connection to TLS.
`write_workload_files(dir, node, ads_uri, ca, services)` issues the certificates from our
CA and writes `dir/bootstrap.json` (the only function here doing I/O).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

from reconciler.names import SERVER_LISTENER_TEMPLATE
from reconciler.xds.ca import CA, Identity
from reconciler.xds.paths import WORKLOAD_DIR  # noqa: F401 (re-exported)


def bootstrap(node_id: str, ads_uri: str, identities: Mapping[str, Identity] | None = None,
              ads_tls: Mapping[str, str] | None = None, refresh_s: int = 5) -> dict:
    if ads_tls:
        cfg = {"ca_certificate_file": ads_tls["ca"]}
        if ads_tls.get("cert"):
            cfg.update(certificate_file=ads_tls["cert"], private_key_file=ads_tls["key"])
        creds = [{"type": "tls", "config": cfg}]
    else:
        creds = [{"type": "insecure"}]
    providers = {
        name: {"plugin_name": "file_watcher", "config": {
            "certificate_file": ident.cert_file, "private_key_file": ident.key_file,
            "ca_certificate_file": ident.ca_file, "refresh_interval": f"{refresh_s}s"}}
        for name, ident in sorted((identities or {}).items())}
    return {
        "xds_servers": [{"server_uri": ads_uri, "channel_creds": creds,
                         "server_features": ["xds_v3"]}],
        "node": {"id": node_id, "cluster": "netintent", "locality": {"zone": "lab"}},
        "server_listener_resource_name_template": SERVER_LISTENER_TEMPLATE,
        "certificate_providers": providers,
    }


def write_workload_files(directory: str | os.PathLike, node_id: str, ads_uri: str, ca: CA,
                         services: Mapping[str, str],
                         ads_tls: Mapping[str, str] | None = None) -> Path:
    """services: provider name ("svc.app") -> SPIFFE id. Returns the bootstrap path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    idents = {name: ca.write_identity(d / "certs", name, sid) for name, sid in services.items()}
    path = d / "bootstrap.json"
    path.write_text(json.dumps(bootstrap(node_id, ads_uri, idents, ads_tls), indent=2))
    return path
