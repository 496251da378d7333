"""py-spy samples -> shares: where a dashboard server's time went, sorted by page, Streamlit and the relay
(``benchmarks/participant_cost.py`` reads its py-spy windows with these; tests/core/test_redraw_cost.py checks the
sorting on made-up samples)."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Frame:
    func: str
    path: str


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


def parse_raw(text: str) -> list[tuple[str, list[Frame], int]]:
    """py-spy's ``--format raw --threads`` lines -> (thread name, frames root first, samples)."""
    out = []
    for line in text.splitlines():
        line = line.rstrip()
        if not line:
            continue
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        parts = stack.split(";")
        thread = ""
        if parts and parts[0].startswith("thread ("):
            thread = parts[0].split(": ", 1)[1] if ": " in parts[0] else ""
            parts = parts[1:]
        frames = []
        for p in parts:
            m = _FRAME.match(p)
            frames.append(Frame(m.group("func"), m.group("path")) if m else Frame(p, ""))
        out.append((thread, frames, int(n)))
    return out


def _rel(path: str, checkout: Path) -> str | None:
    """The path inside the checkout ("pages/2_Fine_tune.py", "explorer/views/figures_runs.py"), or None."""
    root = str(checkout).rstrip("/") + "/"
    return path[len(root):] if path.startswith(root) else None


def _is_project(rel: str | None) -> bool:
    return rel is not None and (rel.startswith(("pages/", "explorer/", "ui/")) or
                                (rel.endswith(".py") and "/" not in rel))  # app.py, ui_*.py


def _library(path: str) -> str:
    """The top-level package of a frame outside the project ("streamlit", "plotly", "json", ...)."""
    p = path.replace("\\", "/")
    if "site-packages/" in p:
        return p.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    m = re.search(r"/lib/python3\.\d+/(.+)$", p)
    if m:
        return "python: " + m.group(1).split("/", 1)[0].removesuffix(".py")
    return Path(p).name or "?"


def attribute(samples, checkout: Path) -> dict:
    """Sort py-spy samples (``parse_raw``) into where the server's time went.

    - ``owner``: "page <file>" when a page script (a file under pages/, or app.py) is on the stack (its fragments
      included); "Streamlit script runner (outside page code)" for the rest of the script thread; "Streamlit
      server (main thread)" for the tornado/asyncio thread (WebSocket, message serialisation, sessions); "run
      queue relay" for the queue's ``peft-run-*`` threads (a worker process's progress arriving); "other".
    - ``called``: inside page scripts, the library the project code called at the deepest project frame
      ("streamlit" = st.* elements marshalling their data, "plotly", "pandas", ...; "project code" when the
      sample is in the project's own code).
    - ``functions``: inclusive samples of the project's own functions (file:function), the 25 largest.
    """
    owner, called, funcs = Counter(), defaultdict(Counter), Counter()
    total = 0
    for thread, frames, n in samples:
        total += n
        rels = [_rel(f.path, checkout) for f in frames]
        page = next((r for r in rels if r is not None and (r.startswith("pages/") or r == "app.py")), None)
        if page is not None:
            who = f"page {Path(page).name}"
            deepest = max((i for i, r in enumerate(rels) if _is_project(r)), default=None)
            if deepest is None or deepest == len(frames) - 1:
                lib = "project code"
            else:
                lib = _library(frames[deepest + 1].path)
            called[who][lib] += n
        elif thread.startswith("ScriptRunner"):
            who = "Streamlit script runner (outside page code)"
        elif thread.startswith("peft-run-"):
            who = "run queue relay (peft-run threads)"
        elif thread == "MainThread":
            who = "Streamlit server (main thread: WebSocket, messages, sessions)"
        else:
            who = "other thread (" + (re.sub(r"[-_]?\d+$", "", thread) or "?") + ")"
        owner[who] += n
        seen = set()
        for f, r in zip(frames, rels):
            if _is_project(r):
                key = f"{r}:{f.func}"
                if key not in seen:
                    seen.add(key)
                    funcs[key] += n
    return dict(samples=total, owner=dict(owner.most_common()),
                called={k: dict(v.most_common()) for k, v in called.items()},
                functions=dict(funcs.most_common(25)))
