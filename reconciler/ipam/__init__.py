"""IP address management in the application domain (docs/ipam.md).

Contract: `model` holds the values (who owns which address, VNI or VLAN); `allocate` is the
pure allocator `(repo apps, previous allocations) -> resolved apps + allocations + errors`;
`persist` keeps allocations in the store (compare-and-swap on a generation, unique per value);
`binding` is the one place the load path (validate, plan, apply, plan --from/--to, the daemon)
reads previous allocations and records new ones; `cli` is `reconciler ipam show`.
"""
