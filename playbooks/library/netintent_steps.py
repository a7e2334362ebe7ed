#!/usr/bin/python
"""Ansible module: run a short list of commands on the target in one module call.

Contract: `steps` is a list of {name, argv, stdin | secret_stdin, skip_empty, run, soft}. Each step runs `argv`
directly (no shell) with `stdin` on its standard input, in order. A step is skipped when `run`
is false, or when its `stdin` is empty and `skip_empty` is true (nothing to write). A failing
step (rc != 0) stops the list and fails the task with `failed_step`, `rc` and `stderr`, unless
it is `soft`: then its rc and stderr are returned and the next step runs. On success `steps`
maps each step name to {rc, stdout, stderr, skipped}.

Why a module: one apply used to be three tasks (ip, nft, verify observe), each a separate
module start on every host and a separate round of the play; this does the same writes in one.
"""
from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

STEP_SPEC = dict(
    name=dict(type="str", required=True),
    argv=dict(type="list", elements="str", required=True),
    stdin=dict(type="str", default=""),
    # for steps whose input carries private keys: never in results or logs. Kept apart from
    # `stdin` because Ansible masks a no_log value wherever it appears in the output, which would
    # also hide the offending line that nft or ip echo back in their error messages.
    secret_stdin=dict(type="str", default="", no_log=True),
    skip_empty=dict(type="bool", default=False),
    run=dict(type="bool", default=True),
    soft=dict(type="bool", default=False),
)


def main() -> None:
    module = AnsibleModule(argument_spec=dict(steps=dict(type="list", elements="dict", options=STEP_SPEC,
                                                         required=True)),
                           supports_check_mode=False)
    results: dict[str, dict] = {}
    changed = False
    for step in module.params["steps"]:
        name, argv, stdin = step["name"], step["argv"], step["secret_stdin"] or step["stdin"]
        if not step["run"] or (step["skip_empty"] and not stdin):
            results[name] = {"rc": 0, "stdout": "", "stderr": "", "skipped": True}
            continue
        if not argv:
            module.fail_json(msg=f"{name}: empty argv", failed_step=name, steps=results)
        # stdin=None: the child gets /dev/null instead of waiting on ours
        rc, out, err = module.run_command(argv, data=stdin if stdin else None,
                                          use_unsafe_shell=False)
        results[name] = {"rc": rc, "stdout": out, "stderr": err, "skipped": False}
        changed = changed or step["skip_empty"] or step["name"] != "observe"
        if rc != 0 and not step["soft"]:
            module.fail_json(msg=f"{name}: rc={rc}", failed_step=name, rc=rc, stderr=err, steps=results)
    module.exit_json(changed=changed, steps=results)


if __name__ == "__main__":
    main()
