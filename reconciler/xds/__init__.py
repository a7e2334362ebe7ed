"""The reconciler's own xDS control plane for proxyless gRPC sidecars.

resources.py  normalised spec shapes <-> Envoy v3 protos (the only place that knows protos)
server.py     ADS server (State of the World): per-node snapshots, versions, nonces, ACK/NACK
cache.py      per-node snapshots, content-hash versions, ACK/NACK records and bounded waits
loadgen.py    ADS load clients in child processes (bench and scale test)
ca.py         a small CA issuing per-service X.509 certificates with SPIFFE URI SANs
bootstrap.py  gRPC xDS bootstrap documents for workloads
paths.py      where a workload host keeps its bootstrap and certificates
relay.py      the lab's long-lived ADS server and its local control channel
csds.py       CSDS client: what each workload actually holds
cli.py        `reconciler serve-xds`
"""
