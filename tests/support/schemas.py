"""Every URL schema of the dashboard: the core's, and each one a page parses when it runs (each page run once in
AppTest with a tiny model in its link, cached for the session).  The fuzz tests and the security scan read them."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

from explorer.urlstate import Schema

ROOT = Path(__file__).resolve().parents[2]


def page_files() -> list[Path]:
    return [ROOT / "app.py"] + sorted((ROOT / "pages").glob("*.py"))


@contextlib.contextmanager
def recording_schemas(sink: list):
    orig = Schema.parse

    def parse(self, params):
        sink.append(self)
        return orig(self, params)
    Schema.parse = parse
    try:
        yield
    finally:
        Schema.parse = orig


def run_page(path: Path, params: dict | None = None, timeout: float = 120):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(path), default_timeout=timeout)
    for k, v in (params or {}).items():
        at.query_params[k] = v
    seen: list = []
    with recording_schemas(seen):
        at.run()
    return at, seen


def _key(schema: Schema) -> tuple:
    return tuple((f.name, f.kind, f.choices, f.min, f.max) for f in schema)


def static_schemas() -> list[tuple[str, Schema]]:
    """Schemas the core defines (the playground's page and both sides of every method)."""
    from explorer.views import playground as pg
    from explorer.methods import METHODS

    out = [("playground", pg.page_schema())]
    out += [(f"playground:{s}:{m}", pg.side_schema(m, s)) for m in METHODS for s in pg.SIDES]
    return out


@functools.lru_cache(maxsize=1)
def page_runs() -> tuple:
    """Each page run once with a tiny model in its link: (page, AppTest, schemas seen)."""
    out = []
    for p in page_files():
        at, seen = run_page(p, {"model": "tiny-bert", "sw_model": "tiny-bert"})
        out.append((p.name, at, seen))
    return tuple(out)


def all_schemas() -> list[tuple[str, Schema]]:
    """Every URL schema: the core's and every one a page parsed (deduplicated)."""
    out, keys = [], set()
    for name, s in static_schemas() + [(f"{n}:{i}", s) for n, _, seen in page_runs() for i, s in enumerate(seen)]:
        if _key(s) not in keys:
            keys.add(_key(s))
            out.append((name, s))
    return out
