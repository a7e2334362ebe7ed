"""The switch driver's session protocol and fan-out, without a switch.

The SSH transport is replaced by a local persistent bash (the test is about the script
upload, fail-fast markers and the deadline bound, not about SSH; the lab tests cover that).
"""
from __future__ import annotations

import subprocess
import time
import uuid

from reconciler.drivers.base import Target
from reconciler.drivers.switch.driver import Session, SwitchDriver
from reconciler.drivers.switch.platforms import Command, ObserveSection, platform_of
from reconciler.model import Layer
from reconciler.status import Outcome


class LocalShell:
    """netmiko-like: send_command(line) runs the line in one persistent bash, returns output."""

    def __init__(self, **_params) -> None:
        self.p = subprocess.Popen(["bash", "--norc", "--noprofile"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def send_command(self, line: str, **_kw) -> str:
        mark = f"__END_{uuid.uuid4().hex}__"
        self.p.stdin.write(f"{line}\necho {mark}\n")
        self.p.stdin.flush()
        out = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ln = self.p.stdout.readline()
            if ln.strip() == mark or not ln:
                break
            out.append(ln)
        return "".join(out)

    def disconnect(self) -> None:
        self.p.stdin.close()
        self.p.wait(5)


def session() -> Session:
    t = Target("sw", Layer.SWITCH, {"ansible_host": "127.0.0.1"})
    return Session(t, platform_of({}), 5, connect=LocalShell)


def test_long_script_is_uploaded_in_chunks_and_run_once():
    s = session()
    try:
        script = "".join(f"echo line{i}-{'x' * 50}\n" for i in range(200))   # ~12 kB, several chunks
        out = s.run_script(script)
        assert out.count("line") == 200 and "@@NI-RC 0@@" in out
    finally:
        s.close()


def test_config_session_stops_at_the_first_rejected_command(tmp_path):
    s = session()
    f = tmp_path / "trace"
    try:
        cmds = [Command(("sh", "-c", f"echo one >> {f}"), "k1"),
                Command(("sh", "-c", "echo 'Error: device says no' >&2; exit 3"), "k2"),
                Command(("sh", "-c", f"echo three >> {f}"), "k3")]
        sent = s.send_config(cmds)
        assert not sent.ok and sent.failed_index == 1 and sent.rc == 3
        assert "device says no" in sent.output
        assert f.read_text() == "one\n"          # the third command never ran
        ok = s.send_config(cmds[:1])
        assert ok.ok
    finally:
        s.close()


def test_values_with_shell_characters_stay_one_argument(tmp_path):
    s = session()
    f = tmp_path / "arg"
    try:
        evil = "a'; touch " + str(tmp_path / "pwned") + "; echo '$(id)"
        assert s.send_config([Command(("sh", "-c", 'printf %s "$1" > "$2"', "sh", evil, str(f)))]).ok
        assert f.read_text() == evil and not (tmp_path / "pwned").exists()
    finally:
        s.close()


def test_observe_sections_are_split_and_a_failing_section_is_an_error():
    s = session()
    try:
        plat = s.platform
        s.platform = type(plat)(**{**plat.__dict__, "observe": (
            ObserveSection("a", "echo alpha"), ObserveSection("b", "printf 'no newline'"),
            ObserveSection("c", "echo skipped", needs="netintent_asn"))})
        raw = s.observe_raw()
        assert {k: v.strip() for k, v in raw.items()} == {"a": "alpha", "b": "no newline"}
        s.platform = type(plat)(**{**plat.__dict__, "observe": (ObserveSection("bad", "sh -c 'echo boom; exit 4'"),)})
        try:
            s.observe_raw()
        except Exception as e:
            assert "observe section bad failed (rc=4): boom" in str(e)
        else:
            raise AssertionError("a failing section must fail the observation")
    finally:
        s.close()


def test_a_hanging_switch_does_not_hold_up_the_batch():
    def connect(**params):
        if params["host"] == "hang":
            time.sleep(3)
        raise ConnectionRefusedError("refused")
    targets = [Target(n, Layer.SWITCH, {"ansible_host": n}) for n in ("hang", "a", "b", "c")]
    drv = SwitchDriver(deadline_s=0.5, io_timeout_s=0.5, max_parallel=2, connect=connect)
    t0 = time.monotonic()
    obs = drv.observe(targets)
    assert time.monotonic() - t0 < 1.5
    assert obs["hang"].outcome is Outcome.UNREACHABLE and "deadline" in obs["hang"].error
    for n in "abc":
        assert obs[n].outcome is Outcome.UNREACHABLE and "cannot log in" in obs[n].error
        assert "refused" in obs[n].error
