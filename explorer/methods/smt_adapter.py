"""SMT's adapter: the warm-up protocol (sum each target's gradient, score and select its b x b blocks) and the
training of the selected blocks only.  The engine drives the warm-up's steps and hands the adapter its gradients
(``explorer.engine.train``; ``explorer.engine.warmup.run_warmup`` for a warm-up on its own).  The block rules it
applies (block size, budget, scores, selection) are in ``explorer.methods.smt_blocks``; the method's facts (knobs,
labels, what the playground draws, memory) in ``explorer.methods.smt``.
"""

from __future__ import annotations

import torch
from torch import nn

from explorer.sparse import SparseDeltaLinear
from explorer.targets import Target, set_submodule
from .base import Adapter, KnobError, Layout, resolve_targets, sparse_head_setup
from .smt_blocks import (SCORE_LABELS, SCORE_NOTE, block_budget, block_scores, resolve_block_size, select_blocks,
                         valid_block_sizes)



class SMTAdapter(Adapter):
    method = "smt"
    state_names = ("brow", "bcol", "delta")  # per selected target: block rows, block columns, the blocks' values

    def __init__(self, model: nn.Module, knobs: dict, n_base: int, selection: dict | None = None):
        super().__init__(model, knobs, n_base)
        self.targets: list[Target] = resolve_targets(model, knobs["targets"], self.method)
        shapes = [(t.d_out, t.d_in) for t in self.targets]
        b = resolve_block_size(knobs["block_size"], shapes)
        if b <= 0 or not all(d_out % b == 0 and d_in % b == 0 for d_out, d_in in shapes):
            valid = [v for v in valid_block_sizes(shapes) if v >= 4]
            raise KnobError(f"smt: block size {knobs['block_size'] or 'auto'} does not divide every target "
                            f"matrix ({', '.join(sorted({f'{a}x{c}' for a, c in shapes}))}); "
                            f"valid sizes: {', '.join(map(str, valid[-8:])) or 'none'}")
        self.block = b
        total_blocks = sum((t.d_out // b) * (t.d_in // b) for t in self.targets)
        n, capped = block_budget(knobs, n_base, b, total_blocks)
        if capped:
            self.notes.append(capped)
        if n < 1:
            raise KnobError("smt: the budget selects no block; raise the number of blocks or the density")
        if n > total_blocks:
            raise KnobError(f"smt: {n} blocks asked but the targets hold only {total_blocks} blocks of {b}x{b}")
        self.n_blocks = n
        self.total_blocks = total_blocks
        self.grad_sums: dict[str, torch.Tensor] | None = None
        self.warmup_done = 0
        self.scores: dict[str, torch.Tensor] = {}
        self.modules: dict[str, SparseDeltaLinear] = {}
        self.notes.append(f"Block size {b} x {b}" + (" (auto: 256 does not divide these matrices or leaves too "
                                                       "few blocks)" if not knobs["block_size"] and b != 256 else "") +
                          f"; {n} of {total_blocks} blocks ({n / total_blocks:.2%} of the targets); "
                          f"score: {SCORE_LABELS[knobs['score']]}; selection: {knobs['selection']}.")
        if knobs["score"] == "abs-mean":
            self.notes.append(SCORE_NOTE)
        if knobs["warmup_mode"] == "gradient-only":
            self.notes.append("Warm-up mode gradient-only (a deviation from the public code): the warm-up sums "
                              "gradients but leaves every weight unchanged.")
        else:
            self.notes.append("Warm-up mode full, as in the public code: the warm-up steps are full fine-tuning "
                              "(all weights move; memory as full fine-tuning during the warm-up).")
        self.given: dict | None = None  # blocks handed over (hand_over), installed when the full warm-up ends
        if selection is not None:
            self.install(selection)

    def hand_over(self, selection: dict) -> None:
        """Train blocks chosen elsewhere (the SMT block inspector's) instead of the warm-up's own choice.

        Full warm-up mode: the warm-up still runs and these blocks are installed when it ends, so the sparse
        phase starts from the weights the warm-up moved, as in the public code (a run that skipped it would
        start the blocks from the pretrained weights).  Gradient-only mode moves no weight: installed now."""
        given = {k: ([int(x) for x in r], [int(x) for x in c]) for k, (r, c) in selection.items()}
        if not any(r for r, _ in given.values()):
            raise KnobError("smt: the selection handed over holds no block")
        if not self.warmup_moves_weights:
            self.install(selection)
            return
        grids = {t.name: (t.d_out // self.block, t.d_in // self.block) for t in self.targets}
        for name, (rows, cols) in given.items():  # refused now, not after the warm-up
            if rows and (name not in grids or max(rows) >= grids[name][0] or max(cols) >= grids[name][1]):
                raise KnobError(f"smt: a selected block lies outside the targets ({name}, b={self.block})")
        self.given = given
        self.n_blocks = sum(len(r) for r, _ in self.given.values())
        self.notes.append(f"{self.n_blocks} blocks handed over: the full warm-up still fine-tunes every weight "
                          "first (the sparse phase starts from the moved weights, as in the public code); the "
                          "handed-over blocks replace the ones it would choose.")

    # --- warm-up protocol (the engine drives the steps: explorer.engine.train, explorer.engine.warmup) --
    @property
    def needs_warmup(self) -> bool:  # type: ignore[override]
        return not self.modules

    @property
    def warmup_moves_weights(self) -> bool:  # type: ignore[override]
        return self.knobs.get("warmup_mode") == "full"

    @property
    def delta_granule(self) -> int:  # type: ignore[override]
        return self.block

    def warmup_signature(self) -> tuple:
        """What the warm-up's summed gradients depend on besides the model, data and seed (its targets)."""
        return tuple(self.knobs["targets"])

    def analytic_bytes(self) -> int:
        n = super().analytic_bytes()
        if self.needs_warmup:  # before the selection: its budget of fp32 blocks and their int32 coordinates
            n += self.n_blocks * (self.block ** 2 * 4 + 2 * 4)
        return n

    def meta_note(self) -> str:
        b = self.block
        grids = sorted({f"{t.d_out // b}x{t.d_in // b}" for t in self.targets})
        return (f"Config only: SMT's selection needs a warm-up on real weights (gradients), so no block is chosen "
                f"here. Budget: {self.n_blocks:,} of {self.total_blocks:,} blocks of {b}x{b} "
                f"({self.n_blocks * b * b:,} parameters); block grid per target: {', '.join(grids)}.")

    def shortcut_note(self, batches: int, task: str) -> str:
        """Said when the playground selected from a short gradient-only warm-up."""
        return (f"Playground warm-up: {batches} batch(es) of '{task}', gradient-only "
                "(a labelled deviation: the public code fine-tunes fully for ~100 steps). "
                "Training on the Fine-tune page runs the full warm-up.")

    def begin_warmup(self) -> list[nn.Parameter]:
        """Set which tensors need gradients; return the ones the warm-up optimizer updates."""
        self.grad_sums = {t.name: torch.zeros(t.d_out, t.d_in, dtype=torch.float32,
                                              device=self.model.get_submodule(t.name).weight.device)
                          for t in self.targets}
        if self.knobs["warmup_mode"] == "full":
            for p in self.model.parameters():
                p.requires_grad_(True)
            return [p for p in self.model.parameters()]
        for p in self.model.parameters():
            p.requires_grad_(False)
        for t in self.targets:
            self.model.get_submodule(t.name).weight.requires_grad_(True)
        return []

    @torch.no_grad()
    def accumulate(self) -> None:
        """After a backward pass: add each target's gradient to its fp32 running sum."""
        assert self.grad_sums is not None, "call begin_warmup() first"
        for t in self.targets:
            w = self.model.get_submodule(t.name).weight
            if w.grad is not None:
                self.grad_sums[t.name] += w.grad.float()
                if self.knobs["warmup_mode"] != "full":
                    w.grad = None
        self.warmup_done += 1

    def finish_warmup(self, sums: dict | None = None) -> dict:
        """Score, select and install the blocks from the summed gradients (``sums``: ones computed earlier)."""
        if sums is None:
            assert self.grad_sums is not None, "call begin_warmup() first"
            sums = self.grad_sums
        self.scores = {k: block_scores(g, self.block, self.knobs["score"]).cpu() for k, g in sums.items()}
        sel = self.given if self.given is not None else select_blocks(self.scores, self.n_blocks,
                                                                          self.knobs["selection"])
        self.grad_sums = None
        for p in self.model.parameters():
            p.grad = None
            p.requires_grad_(False)
        self.install(sel)
        return sel

    def install(self, selection: dict) -> None:
        for t in self.targets:
            rows, cols = selection.get(t.name, ([], []))
            rows = torch.as_tensor(rows, dtype=torch.int32)
            cols = torch.as_tensor(cols, dtype=torch.int32)
            if rows.numel() and (int(rows.max()) >= t.d_out // self.block or int(cols.max()) >= t.d_in // self.block):
                raise KnobError(f"smt: a selected block lies outside {t.name} ({t.d_out}x{t.d_in}, b={self.block})")
            if rows.numel() == 0:
                continue
            base = self.model.get_submodule(t.name)
            base = base.base if isinstance(base, SparseDeltaLinear) else base
            mod = SparseDeltaLinear(base, brow=rows, bcol=cols, block=self.block)
            set_submodule(self.model, t.name, mod)
            self.modules[t.name] = mod
        for p in self.model.parameters():
            if not any(p is m.delta for m in self.modules.values()):
                p.requires_grad_(False)
        sparse_head_setup(self.model)

    def selection(self) -> dict:
        return {n: (m.brow.clone(), m.bcol.clone()) for n, m in self.modules.items()}

    # --- interface ------------------------------------------------------------
    def num_trainable(self) -> int:
        if self.needs_warmup:  # before selection: what will train afterwards
            return self.n_blocks * self.block ** 2 + self.head_parameters()
        return super().num_trainable()

    def layouts(self):
        out = []
        for t in self.targets:
            m = self.modules.get(t.name)
            n = m.delta.numel() if m is not None else 0
            out.append(Layout(t.name, t.type, t.layer, (t.d_out, t.d_in), "blocks", n, n,
                              detail=dict(block=self.block, blocks=n // (self.block ** 2),
                                          grid=[t.d_out // self.block, t.d_in // self.block],
                                          selected=self.needs_warmup is False),
                              _mask=(m.mask if m is not None else
                                     (lambda s=(t.d_out, t.d_in): __import__("numpy").zeros(s, dtype=bool)))))
        return out

    def config(self):
        c = super().config()
        c["block_size"] = self.block
        c["n_blocks"] = self.n_blocks
        return c

    def prepare_load(self, tensors):
        """The saved blocks are the ones that train: install them (the base then copies the tensors in)."""
        self.install({t.name: (tensors[f"{t.name}.brow"], tensors[f"{t.name}.bcol"]) for t in self.targets
                      if f"{t.name}.brow" in tensors})

