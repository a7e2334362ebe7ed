"""One process of the IPAM race (tests/integration/test_ipam_race.py).

`python ipam_race_worker.py MODE STORE_URL SOURCE ITERATIONS SEED BARRIER_DIR PARTIES`
MODE `cli`: SOURCE is a directory of repo variants (v0, v1, ...); each iteration loads one
through `reconciler.cli.load(..., record=True)`, the load path of `reconciler apply`.
MODE `daemon`: SOURCE is a git repo with tags v0, v1, ...; each iteration loads one through
`reconciler.revision.load_revision(..., ipam=StoreBinding(Store(url).engine, record=True))`,
the daemon's load path (Daemon.load).
The first read of previous allocations waits at BARRIER_DIR until PARTIES processes read
theirs, so the first commits of all processes are computed from the same generation.
Prints one JSON line per load: {variant, base, changed, attempts, rows}.
"""
from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path

from reconciler.ipam import binding as ipam_binding
from reconciler.ipam.model import Allocations

_first = {"done": False}
_reads = {"n": 0}
_orig_previous = ipam_binding.StoreBinding.previous


def _barrier(self) -> Allocations:  # noqa: ANN001
    prev = _orig_previous(self)
    _reads["n"] += 1
    if not _first["done"]:
        _first["done"] = True
        d = Path(os.environ["IPAM_BARRIER"])
        (d / str(os.getpid())).touch()
        deadline = time.monotonic() + 60
        while len(list(d.iterdir())) < int(os.environ["IPAM_PARTIES"]) and time.monotonic() < deadline:
            time.sleep(0.005)
    return prev


def main() -> None:
    mode, url, source, iterations, seed, barrier, parties = sys.argv[1:8]
    os.environ["IPAM_BARRIER"], os.environ["IPAM_PARTIES"] = barrier, parties
    ipam_binding.StoreBinding.previous = _barrier  # type: ignore[method-assign]
    rnd = random.Random(int(seed))
    variants = sorted(p.name for p in Path(source).iterdir() if p.name.startswith("v")) if mode == "cli" \
        else [f"v{i}" for i in range(int(os.environ["IPAM_VARIANTS"]))]
    if mode == "daemon":
        from reconciler.revision import load_revision
        from reconciler.service.store import Store
        engine = Store(url).engine
    for i in range(int(iterations)):
        if i:  # a daemon or an operator does not record back to back: 0-20 ms between loads
            time.sleep(rnd.uniform(0.0, 0.02))
        variant = variants[0] if i == 0 else rnd.choice(variants)
        before = _reads["n"]
        if mode == "cli":
            from reconciler.cli import load
            repo = load(str(Path(source) / variant), store=url, record=True)
        else:
            repo = load_revision(source, variant, ipam=ipam_binding.StoreBinding(engine, record=True)).repo
        result = repo.allocations
        print(json.dumps({"variant": variant, "base": result.previous.generation, "changed": result.changed,
                          "attempts": _reads["n"] - before,
                          "rows": [[r.app, r.kind.value, r.owner, r.value] for r in result.allocations.rows()]}),
              flush=True)


if __name__ == "__main__":
    main()
