"""The reconciler's own xDS control plane for proxyless gRPC sidecars.

resources.py  normalised spec shapes <-> Envoy v3 protos (the only place that knows protos)
server.py     ADS server (State of the World): per-node snapshots, versions, nonces, ACK/NACK
cache.py      per-node snapshots, content-hash versions, ACK/NACK records and bounded waits
loadgen.py    ADS load clients in child processes (bench and scale test)
ca.py         a small CA issuing per-service X.509 certificates with SPIFFE URI SANs
bootstrap.py  gRPC xDS bootstrap documents for workloads
csds.py       CSDS client: what each workload actually holds
cli.py        `reconciler serve-xds`
"""
