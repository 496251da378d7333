"""The dashboard's pages, listed once: the router (``app.py``), the sidebar links, Home's "where to go next",
presets and lesson files all read this list.

``key`` is the page's short name (presets, lessons and session keys use it), ``file`` its script under
``pages/``, ``url_path`` its address (the names the legacy ``pages/`` folder gave them, so old links keep
working), ``title`` and ``icon`` what the sidebar and the browser tab show (Material icons: they render without
an emoji font), ``blurb`` one line for Home, ``main_control`` what the page's skip link jumps to (keyboard users
reach it in a few Tab presses; the page marks the spot with ``ui.frame.main_control()``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PageSpec:
    key: str
    file: str
    url_path: str
    title: str
    icon: str
    blurb: str = ""
    main_control: str = ""

    def address(self, query: str = "") -> str:
        """The page's address relative to the server root ("/Fine_tune?model=minilm")."""
        return "/" + self.url_path + (f"?{query}" if query else "")


PAGES: tuple[PageSpec, ...] = (
    PageSpec("home", "pages/0_Home.py", "", "Home", ":material/home:", main_control="the pages"),
    PageSpec("playground", "pages/1_Methods_playground.py", "Methods_playground", "Methods playground",
             ":material/science:", "Move a method's knobs; see counts, memory, masks and ΔW live.", "the method's knobs"),
    PageSpec("finetune", "pages/2_Fine_tune.py", "Fine_tune", "Fine-tune", ":material/model_training:",
             "Train a method on a task with live loss, accuracy and memory curves.", "Start"),
    PageSpec("compare", "pages/3_Compare.py", "Compare", "Compare", ":material/leaderboard:",
             "Runs side by side: accuracy against trainable parameters and memory.", "the budget sweep"),
    PageSpec("memory", "pages/4_Memory_calculator.py", "Memory_calculator", "Memory calculator",
             ":material/calculate:", "What a 7B–65B model needs per method, precision and batch.", "the settings"),
    PageSpec("smt", "pages/5_SMT_block_inspector.py", "SMT_block_inspector", "SMT block inspector",
             ":material/grid_view:", "SMT's warm-up gradients and the blocks it picks.", "Compute gradients"),
    PageSpec("claims", "pages/6_Claims_lab.py", "Claims_lab", "Claims lab", ":material/fact_check:",
             "Each paper's headline claim tested at small scale: intervals over seeds, a computed verdict.", "the claims"),
    PageSpec("board", "pages/7_Class_board.py", "Class_board", "Class board", ":material/groups:",
             "The runs the room shared, on one chart: the budget sweep built together.", "the board"),
)
BY_KEY = {p.key: p for p in PAGES}
BY_FILE = {p.file: p for p in PAGES}


def page(key: str) -> PageSpec:
    """The page with this key (KeyError names the known keys)."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown page {key!r}; pages: {', '.join(BY_KEY)}") from None
