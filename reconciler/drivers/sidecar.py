"""Sidecar driver: the reconciler's ADS server is the device, CSDS is the read-back.

Contract (see base.py for the Protocol):
- A target is one xDS node (target.name = node id). Its workload's CSDS service is at
  var `netintent_csds` ("host:port"), else `<ansible_host or name>:<netintent_csds_port
  or 18000>`.
- observe(targets): one CSDS dump per workload (bounded, in parallel). Every resource the
  node's xDS clients hold (the last version they accepted, also when a newer one was
  NACKed) becomes a Resource of the kinds/specs of reconciler.xds.resources, tagged with
  the app that the ADS server's snapshot says owns it. Proxyless clients fetch resources
  on demand, so a resource the node's snapshot serves but no client of the node has asked
  for yet is reported as served; except server listeners: an xDS-enabled server asks for
  its listener when it starts, so one never asked for is missing (e.g. a bootstrap without
  `server_listener_resource_name_template` makes grpcio run a plain server, silently).
  NACKs (from CSDS and from the ADS server's ACK/NACK records) and silent-failure findings
  (resources.lint) are listed in Observation.error; a workload whose CSDS cannot be
  reached is UNREACHABLE. Routes and endpoints a client still caches after the
  listener/cluster using them was removed (SotW never deletes them) are not reported when
  nothing references them and the server no longer serves them. When the ADS server holds
  no snapshot for a node (it was restarted) and the node holds resources, observe adopts
  them as the node's snapshot, so reconnecting clients are answered with their own config
  (`adopt=False` turns this off).
- apply(plans): builds each node's full snapshot from plan.desired (plus, without prune,
  observed resources the plan does not own), refuses configurations that lint finds
  silently broken (FAILED, nothing pushed), sets the snapshots (only nodes whose content
  changed get a push), then waits up to `ack_timeout` for the ACK/NACK of every changed
  type. NACK -> FAILED with the client's error detail and the NACKed keys in failed_keys
  (the client keeps serving its last accepted version); no ADS stream from the node ->
  UNREACHABLE (the snapshot stays set and is served when the node connects). Types no
  client of the node asked for get a short extra wait only when the push changed something
  a client already subscribes to (only then can it ask for more). Every node not
  UNREACHABLE is read back through CSDS after the push (ApplyResult.observed).
"""
from __future__ import annotations

import dataclasses
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from google.protobuf import any_pb2

from reconciler.drivers.base import ApplyResult, Observation, Target, TargetPlan, targets_of
from reconciler.drivers.sidecar_csds import SHORT_TYPE, Held, drop_stale, from_csds
from reconciler.model import FrozenDict, Layer, Resource, ResourceKey, freeze
from reconciler.status import Outcome
from reconciler.xds import resources as R
from reconciler.xds.server import AckState, SnapshotCache, XdsServer

if TYPE_CHECKING:
    from reconciler.xds.relay import RemoteCache

DEFAULT_CSDS_PORT = 18000


def sidecar_targets(inventory) -> list[Target]:
    """Targets of the sidecar layer named as compile names them: the xDS node id
    (`netintent_xds_node`, default the host name) of each host in the `sidecars` group."""
    return targets_of(inventory)[Layer.SIDECAR]


def csds_address(target: Target) -> str:
    v = target.vars.get("netintent_csds")
    if v:
        return str(v)
    host = target.vars.get("ansible_host") or target.name
    return f"{host}:{target.vars.get('netintent_csds_port') or DEFAULT_CSDS_PORT}"


class SidecarDriver:
    layer = Layer.SIDECAR

    def __init__(self, server: XdsServer | None = None, cache: "SnapshotCache | RemoteCache | None" = None,
                 ack_timeout: float = 5.0, csds_timeout: float = 3.0, parallel: int = 16,
                 adopt: bool = True, server_error: str = "") -> None:
        if cache is None:
            cache = server.cache if server is not None else SnapshotCache()
        self.server = server
        self.cache: SnapshotCache | RemoteCache = cache   # RemoteCache: a relay's (reconciler/xds/relay.py)
        self.ack_timeout = ack_timeout
        self.csds_timeout = csds_timeout
        self.parallel = max(1, parallel)
        self.adopt = adopt
        self.server_error = server_error  # why no ADS server runs here (apply cannot push)
        self._memo: dict[tuple, Any] = {}

    # ---- observe ----------------------------------------------------------------------
    def observe(self, targets: Sequence[Target]) -> Mapping[str, Observation]:
        if not targets:
            return {}
        with ThreadPoolExecutor(min(self.parallel, len(targets))) as pool:
            return dict(zip([t.name for t in targets], pool.map(self._observe_one, targets)))

    def _observe_one(self, target: Target) -> Observation:
        from reconciler.xds import csds  # grpc channel code only when observing

        t0 = time.monotonic()
        node = target.name
        try:
            entries = csds.dump(csds_address(target), self.csds_timeout)
        except Exception as e:  # grpc.RpcError and friends: unreachable is data
            code = getattr(e, "code", lambda: None)()
            return Observation(node, Outcome.UNREACHABLE,
                               error=f"CSDS of {node} at {csds_address(target)}: "
                                     f"{getattr(code, 'name', '') or type(e).__name__}",
                               duration_s=time.monotonic() - t0)
        found, asked, errors = from_csds(node, entries)
        if found and self.adopt and not self.cache.has(node):
            self._adopt(node, found)
        served = self.cache.resources(node)
        owners = self.cache.owners(node)
        for type_url, items in served.items():
            for name, a in items.items():
                if (type_url, name) in asked:
                    continue
                kind, rname, spec = R.from_any(a)
                if kind == "server-listener":
                    continue  # an xDS server asks at start: never asked = not xDS-enabled
                found.setdefault(ResourceKey(Layer.SIDECAR, node, kind, rname), (type_url, name, spec))
        drop_stale(found, served)

        def resource(key: ResourceKey, t: str, name: str, spec: dict) -> Resource:
            if (t, name) in owners:
                return Resource(key, spec, owners[(t, name)])
            # served but not set by the reconciler (a hand edit): not owned, never touched;
            # held but no longer served: it came from this control plane, app unknown
            return Resource(key, spec, "", owned=name not in served.get(t, {}))

        for t, st in self.cache.status(node).items():
            if st.state is AckState.NACKED:
                errors.append(f"ADS: {SHORT_TYPE.get(t, t)} version {st.version} NACKed: {st.error}")
        problems = R.lint((k.kind, k.name, spec) for k, (_, _, spec) in found.items())
        errors += [f"lint: {p}" for p in problems]
        return Observation(node, Outcome.NOOP, tuple(resource(k, *found[k]) for k in sorted(found)),
                           error="; ".join(dict.fromkeys(errors)),
                           duration_s=time.monotonic() - t0)

    def _adopt(self, node: str, found: Held) -> None:
        """Serve what the node already holds (after a restart of the ADS server), so a
        reconnecting client is answered with its own config until the next apply. Adopted
        resources count as owned (they came from this control plane), app unknown."""
        snap: dict[str, dict[str, Any]] = {t: {} for t in R.TYPE_URLS}
        owners: dict[tuple[str, str], str] = {}
        for k, (t, name, spec) in found.items():
            snap[t][name] = R.to_proto(k.kind, k.name, spec)
            owners[(t, name)] = ""
        self.cache.set_node(node, snap, owners)

    # ---- apply ------------------------------------------------------------------------
    def apply(self, plans: Sequence[TargetPlan], dry_run: bool = False) -> Mapping[str, ApplyResult]:
        results: dict[str, ApplyResult] = {}
        expected: dict[str, dict[str, str]] = {}
        new_snaps: dict[str, dict[str, dict[str, Any]]] = {}
        old_snaps: dict[str, dict[str, dict[str, Any]]] = {}
        t0 = time.monotonic()
        ads = {p.target.name: str(p.target.vars.get("netintent_ads") or "") for p in plans}
        for plan in plans:
            node = plan.target.name
            if self.server_error and not dry_run:
                results[node] = ApplyResult(node, Outcome.UNREACHABLE, error=self.server_error)
                continue
            try:
                snap, owners, kinds = self._snapshot(plan)
            except R.SpecError as e:
                results[node] = ApplyResult(node, Outcome.FAILED, error=str(e))
                continue
            mine = {(k, n) for (k, n) in kinds if (R.KIND_TYPE[k], n) in owners}
            problems = [p for p in R.lint((k, n, s) for (k, n), s in kinds.items())
                        if any(p.startswith(f"{k}/{n}:") for k, n in mine)]
            if problems:
                results[node] = ApplyResult(
                    node, Outcome.FAILED, error="refused, would fail silently: " + "; ".join(problems),
                    failed_keys=tuple(sorted({str(ResourceKey(Layer.SIDECAR, node, *kn))
                                              for kn in kinds for p in problems
                                              if p.startswith(f"{kn[0]}/{kn[1]}:")})))
                continue
            if dry_run:
                results[node] = ApplyResult(node, Outcome.DRY_RUN, writes=len(plan.changes))
                continue
            old_snaps[node] = self.cache.resources(node)
            old_versions = self.cache.versions(node)
            versions = self.cache.set_node(node, snap, owners)
            new_snaps[node] = self.cache.resources(node)
            changed = {t: v for t, v in versions.items() if old_versions.get(t) != v}
            if changed:
                expected[node] = changed
            elif not self.cache.connected(node):   # set before, never fetched: the node has no ADS stream
                results[node] = self._no_stream(node, 0, time.monotonic() - t0, ads.get(node, ""))
            else:
                results[node] = ApplyResult(node, Outcome.NOOP)
        if expected:
            waited = self.cache.wait_for(expected, self.ack_timeout, settle_no_stream=True)
            # A client subscribes to routes/clusters/endpoints only after it accepted what
            # points at them: give types nobody asked for yet a short extra bound.
            followup = {n: {t: s.version for t, s in ts.items()
                            if s.state is AckState.NO_STREAM and new_snaps[n].get(t)}
                        for n, ts in waited.items() if self.cache.connected(n)}
            followup = {n: ts for n, ts in followup.items()
                        if ts and self._may_subscribe_more(n, old_snaps[n], new_snaps[n])}
            if followup:
                left = max(0.0, min(1.0, self.ack_timeout - (time.monotonic() - t0)))
                for n, ts in self.cache.wait_for(followup, left).items():
                    for t, s in ts.items():
                        if s.state.settled:
                            waited[n][t] = s
            for node, types in waited.items():
                results[node] = self._result(node, types, old_snaps[node], new_snaps[node],
                                             time.monotonic() - t0, ads.get(node, ""))
        if not dry_run:
            self._read_back(plans, results)
        return results

    def _may_subscribe_more(self, node: str, old: Mapping[str, Mapping[str, Any]],
                            new: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether the node's clients may ask for more after this push: a client subscribes
        to a route, cluster or endpoints only after it accepted a changed resource it already
        subscribes to (a listener naming a new route, ...). A push that changed only
        resources no client of the node asked for starts no new subscription."""
        try:
            subs = self.cache.subscriptions(node)
        except Exception:   # a relay from before `subscriptions` existed: wait as before
            return True
        for t, names in subs.items():
            o, n = old.get(t, {}), new.get(t, {})
            for name in (set(o) | set(n)) if names is None else names:
                if o.get(name) != n.get(name):
                    return True
        return False

    def _read_back(self, plans: Sequence[TargetPlan], results: dict[str, ApplyResult]) -> None:
        """Each node's state as its clients hold it after the push (one CSDS dump per node),
        so the engine takes it as its next observation instead of observing every layer
        again. A node without an ADS stream, or whose CSDS does not answer, has none."""
        todo = [p.target for p in plans if results[p.target.name].outcome is not Outcome.UNREACHABLE]
        for name, obs in self.observe(todo).items():
            if obs.ok:
                results[name] = dataclasses.replace(results[name], observed=obs.resources)

    def _snapshot(self, plan: TargetPlan) -> tuple[dict, dict, dict]:
        """(type_url -> name -> proto|Any, (type_url, name) -> app of owned ones,
        (kind, name) -> spec of everything) for one node. Desired resources, plus (without
        prune) owned observed ones the plan does not want, plus whatever the server serves
        for the node that the reconciler does not own (kept byte for byte)."""
        node = plan.target.name
        chosen: dict[tuple[str, str], tuple[Any, str]] = {}
        for r in plan.desired:  # specs stay frozen: hashable memo keys, no copies
            chosen[(r.key.kind, r.key.name)] = (r.spec, r.app)
        if not plan.prune:
            for r in plan.observed:
                if r.owned and (r.key.kind, r.key.name) not in chosen:
                    chosen[(r.key.kind, r.key.name)] = (r.spec, r.app)
        snap: dict[str, dict[str, Any]] = {t: {} for t in R.TYPE_URLS}
        owners: dict[tuple[str, str], str] = {}
        kinds: dict[tuple[str, str], Any] = {}
        for (kind, name), (spec, app) in chosen.items():
            if kind not in R.KIND_TYPE:
                raise R.SpecError(f"{node}: unknown sidecar kind {kind!r} ({name})")
            t = R.KIND_TYPE[kind]
            snap[t][name] = self._packed(kind, name, spec)
            owners[(t, name)] = app
            kinds[(kind, name)] = spec
        current_owners = self.cache.owners(node)
        for t, items in self.cache.resources(node).items():
            for name, a in items.items():
                if (t, name) not in current_owners and name not in snap.setdefault(t, {}):
                    snap[t][name] = a
                    kind, _, spec = R.from_any(a)
                    kinds.setdefault((kind, name), spec)
        return snap, owners, kinds

    def _packed(self, kind: str, name: str, spec: Any) -> Any:
        """The packed proto of a spec, memoised: callers on many nodes share the same
        cluster/endpoints/route specs, and an unchanged spec is never re-encoded."""
        key = (kind, name, spec if isinstance(spec, FrozenDict) else freeze(spec))
        a = self._memo.get(key)
        if a is None:
            a = any_pb2.Any()
            a.Pack(R.to_proto(kind, name, spec), deterministic=True)
            if len(self._memo) >= 50_000:
                self._memo.clear()
            self._memo[key] = a
        return a

    def _result(self, node: str, types: Mapping[str, Any], old: Mapping, new: Mapping,
                duration: float, ads: str = "") -> ApplyResult:
        writes = len(types)
        if all(s.state is AckState.NO_STREAM for s in types.values()) and not self.cache.connected(node):
            return self._no_stream(node, writes, duration, ads)
        nacks = {t: s for t, s in types.items() if s.state is AckState.NACKED}
        pending = {t: s for t, s in types.items() if s.state is AckState.PENDING}
        if not nacks and not pending:
            return ApplyResult(node, Outcome.APPLIED, writes=writes, duration_s=duration)
        failed: set[str] = set()
        errors: list[str] = []
        for t, s in nacks.items():
            errors.append(f"{node} NACKed {SHORT_TYPE.get(t, t)} version {s.version}: {s.error}")
            failed |= self._nacked_keys(node, t, s.error, old.get(t, {}), new.get(t, {}))
        for t, s in pending.items():
            errors.append(f"{node}: no ACK for {SHORT_TYPE.get(t, t)} version {s.version} "
                          f"within {self.ack_timeout}s" + (f" (ADS server at {ads})" if ads else ""))
        return ApplyResult(node, Outcome.FAILED, writes=writes, duration_s=duration,
                           error="; ".join(errors), failed_keys=tuple(sorted(failed)))

    @staticmethod
    def _no_stream(node: str, writes: int, duration: float, ads: str) -> ApplyResult:
        tried = f" (its bootstrap names the ADS server at {ads}: is it reachable from the host?)" if ads else ""
        return ApplyResult(node, Outcome.UNREACHABLE, writes=writes, duration_s=duration,
                           error=f"no ADS stream from node {node}{tried}; its snapshot is set and "
                                 "will be served when it connects")

    @staticmethod
    def _nacked_keys(node: str, type_url: str, message: str, old: Mapping, new: Mapping) -> set[str]:
        def key(name: str) -> str:
            kind, rname, _ = R.from_any(new[name])
            return str(ResourceKey(Layer.SIDECAR, node, kind, rname))
        named = [n for n in new if n and f"{n}" in message]
        # prefer the longest names: "api.shop:8080/v1" also contains "api.shop:8080"
        named = [n for n in named if not any(m != n and n in m and m in message for m in named)]
        if named:
            return {key(n) for n in named}
        return {key(n) for n, a in new.items() if n not in old or old[n].value != a.value}


def ads_address_of(inventory_path: str | None) -> str | None:
    """The ADS address the inventory's sidecar hosts use (`netintent_ads`), if one."""
    if not inventory_path:
        return None
    from reconciler.intents.inventory import parse_inventory
    try:
        inv, _ = parse_inventory(str(inventory_path), Path(inventory_path).read_bytes())
    except OSError:
        return None
    if inv is None:
        return None
    found = {str(t.vars["netintent_ads"]) for t in targets_of(inv)[Layer.SIDECAR] if t.vars.get("netintent_ads")}
    return sorted(found)[0] if found else None


def factory(context: Mapping[str, Any] | None = None, **kw: Any) -> SidecarDriver:
    """Context keys: `xds_server` (a running XdsServer), else `xds_address` (default: env
    RECONCILER_XDS_ADDRESS, else the inventory's `netintent_ads` (from `inventory_path`), else
    127.0.0.1:18001). When a relay (reconciler.xds.relay, e.g. the lab's) serves that address,
    the driver hands it the snapshots over its control socket; otherwise an ADS server is
    started here, with TLS from `xds_tls_cert`, `xds_tls_key`, optional `xds_tls_client_ca`;
    `xds_ack_timeout_s`, `xds_csds_timeout_s`. If the address cannot be bound (e.g. `reconciler
    serve` already serves it), observe still works and apply reports every target UNREACHABLE
    naming the address."""
    import os

    from reconciler.xds.relay import RemoteCache, control_path

    ctx = dict(context or {}, **kw)
    server = ctx.get("xds_server")
    error = ""
    ack_timeout, csds_timeout = float(ctx.get("xds_ack_timeout_s", 5.0)), float(ctx.get("xds_csds_timeout_s", 3.0))
    if server is None:
        address = str(ctx.get("xds_address") or os.environ.get("RECONCILER_XDS_ADDRESS")
                      or ads_address_of(ctx.get("inventory_path")) or "127.0.0.1:18001")
        sock = control_path(address)
        if sock.exists():
            remote = RemoteCache(sock)
            if remote.reachable():
                return SidecarDriver(cache=remote, ack_timeout=ack_timeout, csds_timeout=csds_timeout)
            remote.close()
        creds = None
        if ctx.get("xds_tls_cert"):
            from reconciler.xds.server import tls_credentials
            creds = tls_credentials(ctx["xds_tls_cert"], ctx["xds_tls_key"], ctx.get("xds_tls_client_ca"))
        server = XdsServer(address, credentials=creds)
        try:
            server.start()
        except RuntimeError as e:
            error = f"no ADS server here: {e} (is `reconciler serve` running on it?)"
            server = None
    return SidecarDriver(server=server, server_error=error, ack_timeout=ack_timeout, csds_timeout=csds_timeout)
