"""Injected faults for the transaction lab tests: wrappers around the REAL drivers.

Each wrapper passes observe and apply through to the real driver of its layer and adds one
fault at a named moment. `factory(layer=..., **settings)` is a `--driver-factory` for
`reconciler apply`: real drivers, and with TXN_FAULT=kill-before-hosts in the environment the
process SIGKILLs itself when the host layer is about to be written (after the switch and
hypervisor layers were); with TXN_FAULT=foreign-during-hosts it runs TXN_FAULT_ARGV (a JSON argv,
e.g. `nft -f -` inside a lab node) with TXN_FAULT_INPUT on stdin once, as the host layer is about
to be written (after the transaction observed the pre-state, before the hosts' write and
read-back): someone else's change that the diff does not model (a foreign nftables table).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
from typing import Any, Callable, Sequence

from reconciler.drivers.base import ApplyResult, TargetPlan
from reconciler.drivers.registry import build_drivers
from reconciler.model import Layer
from reconciler.status import Action, Outcome


class Wrapped:
    """A real driver with a hook around apply."""

    def __init__(self, real: Any, before: Callable[[Sequence[TargetPlan]], None] | None = None,
                 after: Callable[[Sequence[TargetPlan], dict], dict] | None = None) -> None:
        self.real, self.layer = real, real.layer
        self.before, self.after = before, after

    def observe(self, targets):
        return self.real.observe(targets)

    def apply(self, plans, dry_run=False):
        if self.before is not None and not dry_run:
            self.before(plans)
        out = dict(self.real.apply(plans, dry_run=dry_run))
        if self.after is not None and not dry_run:
            out = self.after(plans, out)
        return out

    def render(self, plan):
        return self.real.render(plan)


def reject_key(real: Any, key: str) -> Wrapped:
    """The target that holds `key` rejects every plan that creates or updates it, as a device
    refusing that change; everything else (the rollback, which deletes it) is written for real."""
    class RejectKey(Wrapped):
        def apply(self, plans, dry_run=False):
            bad = [tp for tp in plans if any(str(c.key) == key and c.action is not Action.DELETE
                                             for c in tp.changes)]
            rest = [tp for tp in plans if tp not in bad]
            out = dict(self.real.apply(rest, dry_run=dry_run)) if rest else {}
            for tp in bad:
                out[tp.target.name] = ApplyResult(tp.target.name, Outcome.FAILED,
                                                  error=f"nft: Error: Could not process rule: {key} (injected)")
            return out
    return RejectKey(real)


def once(fn: Callable[[Sequence[TargetPlan], dict], dict]) -> Callable[[Sequence[TargetPlan], dict], dict]:
    fired: list[bool] = []

    def hook(plans: Sequence[TargetPlan], out: dict) -> dict:
        if not fired:
            fired.append(True)
            return fn(plans, out)
        return out
    return hook


def _foreign_change(fired: list[bool]) -> Callable[[Sequence[TargetPlan]], None]:
    def hook(plans: Sequence[TargetPlan]) -> None:
        if not fired:   # once: the rollback's host write finds it already there
            fired.append(True)
            subprocess.run(json.loads(os.environ["TXN_FAULT_ARGV"]), input=os.environ.get("TXN_FAULT_INPUT", ""),
                           text=True, check=True, timeout=60, capture_output=True)
    return hook


def factory(layer: Layer, path: Any = None, **settings: Any) -> Any:
    real = build_drivers([layer], settings)[layer]
    if layer is Layer.HOST and os.environ.get("TXN_FAULT") == "kill-before-hosts":
        return Wrapped(real, before=lambda plans: os.kill(os.getpid(), signal.SIGKILL))
    if layer is Layer.HOST and os.environ.get("TXN_FAULT") == "foreign-during-hosts":
        return Wrapped(real, before=_foreign_change([]))
    return real
