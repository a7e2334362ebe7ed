"""Reachability verification: prove from observed state of all four layers that the network
does what the intents allow, and nothing more (see docs/verify.md).

Modules: wiring (inventory cabling), model (indexed views of observed resources, hops),
nft / ovs / fabric / sidecar (the per-layer decisions), pairs (scope), verdict (per-pair
end-to-end verdicts), compare (violations and leaks), report, observe, differential, probe, cli.
"""
