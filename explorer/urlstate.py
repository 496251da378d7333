"""Settings in the URL: a whitelist schema per page, every value clamped.

Pure Python (no streamlit), so it can be tested directly and fuzzed.

A page declares its settings as :class:`Field` objects in a :class:`Schema`::

    SCHEMA = Schema([
        Field("model", "str", "minilm", max_len=200),
        Field("steps", "int", 30, min=1, max=500),
        Field("lr", "float", 1e-3, min=1e-6, max=1.0),
        Field("method", "choice", "lora", choices=list(METHODS)),
        Field("targets", "multi", ["q", "v"], choices=ALL_TYPES),
        Field("instr", "bool", False),
    ])
    values, warnings = SCHEMA.parse(st.query_params.to_dict())   # never raises
    st.query_params.from_dict(SCHEMA.encode(values))              # write back

``parse`` ignores unknown keys (silently: other pages' keys and tracking
parameters are not errors), falls back to the default for values that cannot be
read, clamps numbers into [min, max], drops unknown choices, and returns one
short warning per value it changed so the page can show a notice.  ``encode``
writes values as strings; ``parse(encode(v))`` gives back ``v`` for any clamped
``v`` (floats are written with ``repr`` so they round-trip exactly).

Method knobs map onto fields with :func:`knob_fields` (``prefix`` keeps the knobs
of two methods shown side by side apart, e.g. ``a_rank`` and ``b_rank``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

__all__ = ["Field", "Schema", "knob_fields", "MAX_VALUE_LEN"]

MAX_VALUE_LEN = 2000  # longest raw URL value looked at (longer ones are cut first)
_BOOL_TRUE = {"1", "true", "yes", "on", "t", "y"}
_BOOL_FALSE = {"0", "false", "no", "off", "f", "n", ""}
_CTRL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Field:
    """One whitelisted URL setting.

    kind: ``int``, ``float``, ``bool``, ``choice`` (one of ``choices``), ``multi``
    (a comma-separated subset of ``choices``) or ``str`` (free text, control
    characters removed, at most ``max_len`` characters).
    """

    name: str
    kind: str
    default: Any
    min: float | None = None
    max: float | None = None
    choices: tuple | None = None
    help: str = ""
    max_len: int = 200
    allow_empty: bool = False  # multi: an empty selection is allowed (else: the default)

    def __post_init__(self):
        if self.kind not in ("int", "float", "bool", "choice", "multi", "str"):
            raise ValueError(f"unknown field kind {self.kind!r}")
        if self.choices is not None and not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))
        if self.kind in ("choice", "multi") and not self.choices:
            raise ValueError(f"field {self.name}: {self.kind} needs choices")

    # -- one value -----------------------------------------------------------
    def clamp(self, value: Any) -> tuple[Any, str | None]:
        """A valid value for this field and a warning when ``value`` was changed.

        ``value`` may be a raw URL string or an already-typed Python value.
        """
        try:
            return self._clamp(value)
        except Exception:  # noqa: BLE001 - never raise on hostile input
            return self.default_value(), f"{self.name}: unreadable value, using the default"

    def default_value(self):
        return list(self.default) if isinstance(self.default, (list, tuple)) else self.default

    def _clamp(self, value):
        k = self.kind
        if isinstance(value, str):
            value = value[:MAX_VALUE_LEN]
        if k in ("int", "float"):
            return self._clamp_number(value)
        if k == "bool":
            if isinstance(value, bool):
                return value, None
            s = str(value).strip().lower()
            if s in _BOOL_TRUE:
                return True, None
            if s in _BOOL_FALSE:
                return False, None
            return self.default, f"{self.name}: '{_short(value)}' is not on/off, using {self.default}"
        if k == "choice":
            s = str(value).strip()
            if s in self.choices:
                return s, None
            # case-insensitive match as a courtesy
            low = {str(c).lower(): c for c in self.choices}
            if s.lower() in low:
                return low[s.lower()], None
            return self.default, f"{self.name}: '{_short(value)}' is not one of {', '.join(map(str, self.choices))}"
        if k == "multi":
            items = value if isinstance(value, (list, tuple)) else str(value).split(",")
            items = [str(s).strip() for s in items if str(s).strip()]
            good, bad = [], []
            for s in items:
                if s in self.choices:
                    if s not in good:
                        good.append(s)
                else:
                    bad.append(s)
            # keep the order of choices (one canonical form per subset)
            good = [c for c in self.choices if c in good]
            if not good and not self.allow_empty:
                msg = f"{self.name}: no known value" + (f" ({_short(','.join(bad))})" if bad else "") + \
                    ", using the default"
                return self.default_value(), msg
            if bad:
                return good, f"{self.name}: ignored unknown value(s) {_short(','.join(bad))}"
            return good, None
        # str
        s = _CTRL.sub("", str(value)).strip()
        if len(s) > self.max_len:
            return s[: self.max_len].rstrip(), f"{self.name}: cut to {self.max_len} characters"  # stable when read again
        return s, None

    def _clamp_number(self, value):
        if isinstance(value, bool):
            value = int(value)
        if isinstance(value, str):
            s = value.strip().replace("_", "")
            x = float(s)  # raises on junk -> default
        else:
            x = float(value)
        warn = None
        if math.isnan(x):
            return self.default, f"{self.name}: not a number, using the default {self.default}"
        if self.min is not None and x < self.min:
            x, warn = self.min, f"{self.name}: {_short(value)} is below the minimum, set to {_fmt(self.min)}"
        if self.max is not None and x > self.max:
            x, warn = self.max, f"{self.name}: {_short(value)} is above the maximum, set to {_fmt(self.max)}"
        if math.isinf(x):  # unbounded side
            return self.default, f"{self.name}: infinite, using the default {self.default}"
        if self.kind == "int":
            r = int(round(x))
            if r != x and warn is None:
                warn = f"{self.name}: {_short(value)} is not a whole number, set to {r}"
            # rounding may step outside [min, max] only if the bounds are fractional
            if self.min is not None and r < self.min:
                r = int(math.ceil(self.min))
            if self.max is not None and r > self.max:
                r = int(math.floor(self.max))
            return r, warn
        return float(x), warn

    def encode(self, value) -> str:
        k = self.kind
        if k == "bool":
            return "1" if value else "0"
        if k == "multi":
            return ",".join(map(str, value))
        if k == "float":
            return repr(float(value))
        return str(value)


def _short(v, n: int = 40) -> str:
    s = _CTRL.sub("?", str(v))
    return s if len(s) <= n else s[: n - 1] + "…"


def _fmt(x) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class Schema:
    """An ordered whitelist of fields."""

    def __init__(self, fields: Iterable[Field]):
        self.fields: dict[str, Field] = {}
        for f in fields:
            if f.name in self.fields:
                raise ValueError(f"duplicate field {f.name}")
            self.fields[f.name] = f

    def __contains__(self, name):
        return name in self.fields

    def __getitem__(self, name) -> Field:
        return self.fields[name]

    def __iter__(self):
        return iter(self.fields.values())

    def __add__(self, other: "Schema") -> "Schema":
        return Schema(list(self) + list(other))

    def defaults(self) -> dict:
        return {f.name: f.default_value() for f in self}

    def parse(self, params: Mapping[str, Any] | None) -> tuple[dict, list[str]]:
        """Values for every field (defaults where absent) and warnings for changed ones.

        ``params`` maps names to a string or a list of strings (the last one wins,
        as in ``st.query_params``).  Unknown keys are ignored.  Never raises.
        """
        values, warnings = self.defaults(), []
        if not params:
            return values, warnings
        try:
            items = list(params.items())
        except Exception:  # noqa: BLE001
            return values, ["settings: the link could not be read, using the defaults"]
        for key, raw in items:
            f = self.fields.get(key) if isinstance(key, str) else None
            if f is None:
                continue
            if isinstance(raw, (list, tuple)) and f.kind != "multi":
                raw = raw[-1] if raw else ""
            elif isinstance(raw, (list, tuple)) and f.kind == "multi" and len(raw) == 1:
                raw = raw[0]
            v, w = f.clamp(raw)
            values[key] = v
            if w:
                warnings.append(w)
        return values, warnings

    def clamp(self, values: Mapping[str, Any]) -> dict:
        """Typed values (e.g. from widgets) forced valid; unknown keys dropped."""
        out = self.defaults()
        for k, v in values.items():
            if k in self.fields:
                out[k] = self.fields[k].clamp(v)[0]
        return out

    def encode(self, values: Mapping[str, Any], skip_defaults: bool = False) -> dict[str, str]:
        """Strings for ``st.query_params``; fields absent from ``values`` are left out."""
        out = {}
        for f in self:
            if f.name not in values:
                continue
            v = f.clamp(values[f.name])[0]
            if skip_defaults and v == f.default_value():
                continue
            out[f.name] = f.encode(v)
        return out


def knob_fields(knobs, prefix: str = "", skip: Iterable[str] = ()) -> list[Field]:
    """URL fields for a method's knobs: each ``explorer.methods.base.Knob`` derives its own (``Knob.url_field``)."""
    skip = set(skip)
    return [k.url_field(prefix) for k in knobs if k.name not in skip]
