"""The reconciler's own xDS control plane for proxyless gRPC sidecars.

resources.py  normalised spec shapes <-> Envoy v3 protos (the only place that knows protos)
server.py     ADS server (State of the World): per-node snapshots, versions, nonces, ACK/NACK
ca.py         a small CA issuing per-service X.509 certificates with SPIFFE URI SANs
bootstrap.py  gRPC xDS bootstrap documents for workloads
csds.py       CSDS client: what each workload actually holds
cli.py        `reconciler serve-xds`
"""
