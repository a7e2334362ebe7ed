"""`reconciler lab up|down|status|exec NODE -- CMD` (argparse), wired by `add_cli(subparsers)`.

Contract: every subcommand takes a *.clab.yml path; `--name` overrides the lab name and
`--mgmt-subnet` the management subnet (to run a second copy side by side); `--inventory-dir`
(default ./inventory) is where `up` writes <lab>.yml. Errors (bad topology, failed step,
not root) print one line to stderr and exit 1 (2 for usage errors); never a traceback.
`status` exits 0 when the lab is up, 3 when it is down or partial (state in the output).
`exec` exits with the command's own exit code.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from reconciler.lab.lab import Lab, LabError, LabState
from reconciler.lab.system import StepError
from reconciler.lab.topology import TopologyError


def add_cli(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("lab", help="run containerlab topologies on network namespaces")
    sub = p.add_subparsers(dest="lab_cmd", required=True)
    for name, help_ in (("up", "bring the lab up (no-op when already up)"),
                        ("down", "remove everything the lab created"),
                        ("status", "show per-node status"),
                        ("exec", "run a command on a node: exec TOPO NODE -- CMD...")):
        sp = sub.add_parser(name, help=help_)
        sp.add_argument("topology", help="containerlab topology file (*.clab.yml)")
        sp.add_argument("--name", help="override the lab name")
        sp.add_argument("--mgmt-subnet", help="override the management IPv4 subnet")
        sp.add_argument("--inventory-dir", default="inventory",
                        help="where `up` writes <lab>.yml (default: ./inventory)")
        if name == "status":
            sp.add_argument("--json", action="store_true", help="print JSON")
        if name == "exec":
            sp.add_argument("node")
            sp.add_argument("cmd", nargs=argparse.REMAINDER, help="-- command and arguments")
    p.set_defaults(func=run_cli)
    return p


def run_cli(args: argparse.Namespace) -> int:
    try:
        lab = Lab.from_file(args.topology, args.name, args.inventory_dir, args.mgmt_subnet)
        if args.lab_cmd == "up":
            t = time.monotonic()
            if lab.up():
                print(f"lab {lab.name} up in {time.monotonic() - t:.1f}s; "
                      f"inventory {lab.inventory_path}; key {lab.key_path}")
            return 0
        if args.lab_cmd == "down":
            t = time.monotonic()
            problems = lab.down()
            print(f"lab {lab.name} down in {time.monotonic() - t:.1f}s"
                  + (f" with {len(problems)} problem(s)" if problems else ""))
            return 1 if problems else 0
        if args.lab_cmd == "status":
            rows = lab.status()
            state = lab.state()
            if args.json:
                print(json.dumps({"lab": lab.name, "state": state.value,
                                  "up": state is LabState.UP, "nodes": rows}, indent=1))
            else:
                print(f"lab {lab.name}: {state.value}")
                for r in rows:
                    flags = " ".join(f"{k}={'ok' if v else 'DOWN'}" for k, v in r.items()
                                     if isinstance(v, bool))
                    print(f"  {r['node']:<12} {r['mgmt']:<16} {flags}")
            return 0 if state is LabState.UP else 3
        if args.lab_cmd == "exec":
            cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
            if not cmd:
                print("lab exec: no command given (lab exec TOPO NODE -- CMD...)", file=sys.stderr)
                return 2
            cp = lab.exec(args.node, cmd, check=False, timeout=600)
            sys.stdout.write(cp.stdout)
            sys.stderr.write(cp.stderr)
            return cp.returncode
    except (TopologyError, LabError, StepError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except subprocess.TimeoutExpired as e:
        print(f"error: timed out: {e}", file=sys.stderr)
        return 1
    return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: `python -m reconciler.lab.cli up FILE`."""
    parser = argparse.ArgumentParser(prog="reconciler")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add_cli(sub)
    args = parser.parse_args(["lab", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
