"""`reconciler verify`: reachability from observed state, per application.

    reconciler verify REPO [--inventory INV] [--app NAME]... [--json] [--witness]
                           [--observed SNAPSHOT.json] [--layers L,...]
                           [--from REV --to REV] [--probe [--sample N] [--lab FILE]]

Contract: observes every target once (the drivers of the registry, or the snapshot driver with
--observed), writing nothing; builds the model, evaluates every pair of the scope (or of the
--app applications and what they call) and prints violations and leaks with their hops.
Exit 0: neither violation nor leak nor unknown verdict; 1: a violation or a leak (or, with
--probe, a model defect); 2: an error, or verdicts that stay unknown (a target not observed,
a rule not understood). `--from/--to` compiles both revisions and compares the reachability of
their desired states (no device touched): exit 0 without change, 1 with changes, 2 on error.
`--probe` confirms the verdicts with TCP from inside the lab's namespaces and, for services with
sidecars, with real gRPC calls from the lab's workloads (the lab must be up); the JSON output
gives the seconds each stage took (observe, verify, probe).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from reconciler.model import Layer

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_LAB = ROOT / "labs" / "app-fabric.clab.yml"
EXIT_OK, EXIT_FOUND, EXIT_ERROR = 0, 1, 2


def _layers(text: str | None) -> list[str] | None:
    if not text:
        return None
    names = [n.strip() for n in text.split(",") if n.strip()]
    missing = {Layer.SWITCH.value, Layer.HYPERVISOR.value, Layer.HOST.value} - set(names)
    if missing:
        from reconciler.loading import UserError
        raise UserError(f"--layers: verify needs the {', '.join(sorted(missing))} layer(s); only the sidecar "
                        "layer may be left out")
    return names


def cmd_verify(args: argparse.Namespace) -> int:
    from reconciler.intents.validate import RepoInvalid
    try:
        return _differential(args) if args.from_rev or args.to_rev else _verify(args)
    except RepoInvalid as exc:      # bad intents are an error here (2), as for plan and diff
        from reconciler.loading import print_invalid
        print_invalid(exc)
        return EXIT_ERROR


def _verify(args: argparse.Namespace) -> int:
    from reconciler.loading import inventory_path, load
    from reconciler.verify.compare import compare
    from reconciler.verify.observe import model_of, observe
    from reconciler.verify.verdict import Verifier

    repo = load(args.repo, args.inventory)
    layers = _layers(args.layers)
    t0 = time.monotonic()
    resources, unobserved = observe(repo, inventory_path(args, repo), layers, args.observed, args.timeout)
    t1 = time.monotonic()
    m, scope = model_of(repo, resources, unobserved, layers)
    unknown_apps = sorted(set(args.app or ()) - set(repo.apps))
    if unknown_apps:
        from reconciler.loading import UserError
        raise UserError(f"--app: no application {', '.join(unknown_apps)}")
    cmp = compare(Verifier(m, scope, expand=args.probe).run(args.app or ()))
    t2 = time.monotonic()
    probed = _probe(args, cmp) if args.probe else None
    _print(args, cmp, probed, (t1 - t0, t2 - t1, time.monotonic() - t2), unobserved)
    code = cmp.exit_code()
    if probed is not None and probed[1] and code == EXIT_OK:
        code = EXIT_FOUND
    return code


def _probe(args: argparse.Namespace, cmp):
    from reconciler.lab import Lab
    from reconciler.verify.probe import probe
    lab = Lab.from_file(args.lab)
    if not lab.is_up():
        from reconciler.loading import UserError
        raise UserError(f"--probe: lab {lab.name} is not up (reconciler lab up {args.lab})")
    return probe(lab, cmp.results, args.sample)


def _print(args: argparse.Namespace, cmp, probed, times, unobserved) -> None:
    from reconciler.verify.report import probe_json, render_probe, render_text, to_json
    if args.json:
        out = to_json(cmp, hops=args.witness)
        out["unobserved"] = [{"layer": lt[0], "target": lt[1], "reason": why} for lt, why in sorted(unobserved.items())]
        out["seconds"] = {"observe": round(times[0], 3), "verify": round(times[1], 3)}
        if probed is not None:
            out["seconds"]["probe"] = round(times[2], 3)
        if probed is not None:
            out["probe"] = probe_json(probed[1], probed[0])
        print(json.dumps(out, indent=2, sort_keys=True))
        return
    for (layer, target), why in sorted(unobserved.items()):
        print(f"{layer} {target}: not observed: {why}", file=sys.stderr)
    sys.stdout.write(render_text(cmp, witness=args.witness))
    if probed is not None:
        sys.stdout.write(render_probe(probed[1], probed[0]))


def _differential(args: argparse.Namespace) -> int:
    from reconciler.verify.differential import diff_range
    d = diff_range(args.repo, args.from_rev or "HEAD~1", args.to_rev or "HEAD", args.inventory)
    if args.json:
        print(json.dumps(d.to_json(), indent=2, sort_keys=True))
    else:
        sys.stdout.write(d.render())
    return EXIT_FOUND if d.changed else EXIT_OK


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("verify", help="prove from observed state that the network does what the intents "
                                             "allow, and nothing more")
    p.add_argument("repo", help="intents repo directory")
    p.add_argument("--inventory", help="inventory file (default: the one named in reconciler.yaml)")
    p.add_argument("--app", action="append", metavar="NAME", help="only this application (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--witness", action="store_true", help="print every finding's whole path (with --json: the hops "
                                                          "of every pair)")
    p.add_argument("--observed", metavar="SNAPSHOT.json", help="observed state from a snapshot file")
    p.add_argument("--layers", metavar="L,...", help="layers to observe (default all; sidecar may be left out)")
    p.add_argument("--timeout", type=float, default=60.0, help="per-target observe timeout in seconds")
    p.add_argument("--from", dest="from_rev", metavar="REV", help="differential: start of a commit range")
    p.add_argument("--to", dest="to_rev", metavar="REV", help="differential: end of the range (default HEAD)")
    p.add_argument("--probe", action="store_true", help="confirm verdicts with TCP and gRPC calls from inside the lab")
    p.add_argument("--sample", type=int, metavar="N", help="with --probe: probe N pairs (allowed ones first)")
    p.add_argument("--lab", default=str(REFERENCE_LAB), help="with --probe: the lab topology (default: reference)")
    p.add_argument("--no-color", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_verify)
