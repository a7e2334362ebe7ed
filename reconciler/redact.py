"""Keep secrets out of logs, the store and metrics.

Contract: `Redactor` knows secret *values* (collected from inventory variables whose names
look secret: password, passwd, secret, token, private key, become/ssh pass, api key) and
secret *field names*. `redactor.text(s)` replaces every known secret value in a string by
`***`; `redactor.value(v)` walks a JSON-like value, masking fields with secret names and
secret substrings anywhere. Pure, no I/O. One process-wide instance (`REDACTOR`) is fed
by the daemon when it loads an inventory; the store and the JSON log formatter use it.
"""
from __future__ import annotations

import re
import threading
from typing import Any, Iterable, Mapping

MASK = "***"

# Variable / field names whose values are secrets. ("key" alone is NOT one: resource keys.)
SECRET_NAME = re.compile(
    r"(pass(word|wd|phrase)?$|^.*_pass$|secret|token|private_?key|ssh_?key|api_?key|"
    r"credential|become_pass|vault|(^|_)key_?data$|^ansible_ssh_private_key_file$)",
    re.IGNORECASE)

_MIN_LEN = 4  # shorter values would mask innocent text


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(str(name)))


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()
        self._rx: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def add(self, values: Iterable[Any]) -> None:
        with self._lock:
            for v in values:
                if isinstance(v, (str, int, float)) and not isinstance(v, bool):
                    s = str(v)
                    if len(s) >= _MIN_LEN:
                        self._values.add(s)
            vals = sorted(self._values, key=len, reverse=True)
            self._rx = re.compile("|".join(re.escape(v) for v in vals)) if vals else None

    def add_vars(self, variables: Mapping[str, Any]) -> None:
        """Remember secret-looking values of a variables mapping (nested too)."""
        found: list[Any] = []
        _collect(variables, found, False)
        self.add(found)

    def text(self, s: str) -> str:
        rx = self._rx
        if not s or rx is None:
            return s
        return rx.sub(MASK, s)

    def value(self, v: Any) -> Any:
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, Mapping):
            return {k: (MASK if is_secret_name(k) and v[k] not in (None, "")
                        and not isinstance(v[k], (Mapping, list, tuple))
                        else self.value(x)) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [self.value(x) for x in v]
        return v


def _collect(v: Any, out: list[Any], secret: bool) -> None:
    if isinstance(v, Mapping):
        for k, x in v.items():
            _collect(x, out, secret or is_secret_name(str(k)))
    elif isinstance(v, (list, tuple)):
        for x in v:
            _collect(x, out, secret)
    elif secret:
        out.append(v)


REDACTOR = Redactor()
