"""Per-application network telemetry from the four layers (docs/telemetry.md).

Stages (one module each): `model` (frozen values and vocabularies), `index` (which device
counter belongs to which app, service, port and verdict: built from the intents and the desired
state, pure), `parse` (device output -> raw counter readings, pure, one parser per layer),
`aggregate` (readings + index -> labelled points, unknown shares; pure), `totals` (monotonic
totals across counter resets, Prometheus style), `collect` (one round trip per target: `ssh`
kept shells for hosts and hypervisors, the switch driver's session pool for leaves), `export`
(Prometheus series), `service` (the daemon's own schedule), `view` (per-app rows for people),
`cli` (`reconciler top`).
"""
