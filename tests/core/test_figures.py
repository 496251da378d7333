"""Playground core and figure builders: exact counts, untouched cache, honest reductions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from explorer.views import figures as F
from explorer.views import playground as pg
from explorer.methods import METHODS, apply_method
from explorer.models import checksum, fresh_copy

KNOBS = {
    "full": {}, "lora": dict(rank=4), "dora": dict(rank=4), "lora-sp": dict(rank=4, freeze=0.5),
    "tied-lora": dict(rank=4, preset="TL6"), "smt": dict(block_size=16, blocks=6),
    "sparta": dict(density=0.05, targets=["v", "o"]),
}


@pytest.mark.parametrize("model_fixture", ["tiny_bert", "tiny_llama"])
def test_summaries_exact_and_cache_untouched(model_fixture, request):
    loaded = request.getfixturevalue(model_fixture)
    before = checksum(loaded.model)
    for method, knobs in KNOBS.items():
        s = pg.summarize(loaded, method, knobs, warm=1, use_cache=False)
        # the same method on a real deep copy (what training uses) gives the same counts
        ref = apply_method(fresh_copy(loaded.model), method, n_base=loaded.info.n_params,
                           smt_selection={} if method == "smt" else None,
                           **({**knobs, "warmup_mode": "gradient-only"} if method == "smt" else knobs))
        assert s.trainable == (ref.num_trainable() if method != "smt" else 6 * 16 * 16 + ref.head_parameters())
        assert s.total == loaded.info.n_params
        lines, total = pg.formula(s)
        assert total == s.trainable, (method, lines)
        assert s.optimizer_bytes == 8 * s.trainable and s.gradient_bytes == 4 * s.trainable
        assert s.adapter_bytes > 0
        if method != "full":  # the saved tensors hold at least the trainable values in fp32
            assert s.adapter_bytes >= 4 * (s.trainable - s.head)
    assert checksum(loaded.model) == before
    assert not any(p.requires_grad for p in loaded.model.parameters())
    assert all(p.grad is None for p in loaded.model.parameters())


def test_shared_copy_shares_storage_but_not_flags(tiny_bert):
    m = pg.shared_weight_copy(tiny_bert.model)
    p0 = dict(tiny_bert.model.named_parameters())
    for n, p in m.named_parameters():
        assert p.data_ptr() == p0[n].data_ptr() and p is not p0[n]
        p.requires_grad_(True)
    assert not any(p.requires_grad for p in tiny_bert.model.parameters())


def test_summary_cache_hits_and_rank_changes_count(tiny_bert):
    pg.clear_cache()
    a = pg.summarize(tiny_bert, "lora", dict(rank=2))
    assert pg.summarize(tiny_bert, "lora", dict(rank=2)) is a
    b = pg.summarize(tiny_bert, "lora", dict(rank=8))
    assert b.trainable - b.head == 4 * (a.trainable - a.head)


def test_smt_selection_uses_warmup_gradients(tiny_llama):
    s = pg.summarize(tiny_llama, "smt", dict(block_size=16, blocks=3, targets=["v"]), warm=1, use_cache=False)
    g = pg.smt_grad_sums(tiny_llama, ("v",), 1, 0)["sums"]
    from explorer.methods.smt_blocks import block_scores

    scores = torch.cat([block_scores(v, 16).reshape(-1) for v in g.values()])
    chosen = torch.cat([s.adapter.scores[k].reshape(-1)[
        (s.adapter.modules[k].brow.long() * s.adapter.scores[k].shape[1] + s.adapter.modules[k].bcol.long())]
        for k in s.adapter.modules])
    assert chosen.numel() == 3
    assert float(chosen.min()) >= float(torch.sort(scores, descending=True).values[2]) - 1e-12
    assert s.warmup["batches"] == 1


def test_reduce_mask_keeps_fractions():
    m = np.zeros((1536, 384), bool)
    m[:3, :3] = True
    red, f = pg.reduce_mask(m, 512)
    assert f == 3 and red.shape == (512, 128) and red.dtype == np.float32
    assert red[0, 0] == pytest.approx(1.0) and red[1:, 1:].sum() == 0
    assert red.sum() * 9 == pytest.approx(m.sum())
    # a ragged edge is averaged over real entries only
    red, f = pg.reduce_mask(np.ones((1000, 7), bool), 512)
    assert f == 2 and np.allclose(red, 1.0)
    small, f = pg.reduce_mask(np.eye(4, dtype=bool))
    assert f == 1 and np.array_equal(small, np.eye(4, dtype=np.float32))


def test_reduce_abs_max_keeps_single_entries():
    d = np.zeros((1024, 1024), np.float32)
    d[1000, 3] = -2.5
    red, f = pg.reduce_abs_max(d, 512)
    assert f == 2 and red.max() == pytest.approx(2.5) and (red > 0).sum() == 1


def test_illustrative_delta_structure(tiny_bert):
    s = pg.summarize(tiny_bert, "lora", dict(rank=3))
    t = s.adapter.targets[0]
    d, note = pg.illustrative_delta(s, t.name)
    assert d.shape == (t.d_out, t.d_in) and pg.numerical_rank(d) == 3 and "zero" in note
    assert pg.delta_rank(s, t.name, d) == (3, True, "rank 3")  # from the factors, same as a full SVD
    s = pg.summarize(tiny_bert, "sparta", dict(density=0.1, targets=["v"]))
    lay = s.layouts()[0]
    d, _ = pg.illustrative_delta(s, lay.target)
    assert np.array_equal(d != 0, lay.mask())  # only the selected entries change
    r, exact, _ = pg.delta_rank(s, lay.target, d)
    assert not exact and pg.numerical_rank(d) <= r <= min(d.shape)
    s = pg.summarize(tiny_bert, "tied-lora", dict(rank=2, preset="TL6", targets=["q"]))
    lay = s.layouts()[1]
    d, _ = pg.illustrative_delta(s, lay.target)
    assert pg.delta_rank(s, lay.target, d)[:2] == (pg.numerical_rank(d), True) and pg.numerical_rank(d) == 2
    s = pg.summarize(tiny_bert, "lora-sp", dict(rank=2, freeze=0.9, targets=["q"]))
    lay = s.layouts()[0]
    d, _ = pg.illustrative_delta(s, lay.target)
    assert not (d[~lay.mask()]).any()  # rows whose B entries are all frozen stay zero


def test_figures_fixed_ranges_and_units(tiny_bert):
    red, f = pg.reduce_mask(np.random.default_rng(0).random((64, 128)) < 0.1)
    fig = F.mask_heatmap(red, (64, 128), f, "mask", "plotly_dark")
    hm = fig.data[0]
    assert (hm.zmin, hm.zmax) == (0.0, 1.0) and fig.layout.template.layout.paper_bgcolor is not None
    assert "input column" in fig.layout.xaxis.title.text and fig.layout.uirevision == "keep"
    assert F.template_for("dark") == "plotly_dark" and F.template_for(None) == "plotly_white"
    s = pg.summarize(tiny_bert, "tied-lora", dict(rank=4, preset="TL5"))
    fig = F.tied_diagram(pg.tied_structure(s), "tied")
    texts = " ".join(a.text for a in fig.layout.annotations)
    assert "A (shared)" in texts and "B (shared)" in texts and "u_1" in texts
    fig = F.memory_bars([dict(name="x", grad=2**20, optim=2**21, adapter=10)], "m")
    assert "MiB" in fig.layout.xaxis.title.text and fig.data[1].x[0] == pytest.approx(2.0)
    fig = F.block_scores(np.random.rand(4, 4).astype(np.float32), np.eye(4, dtype=bool), 16, "s")
    assert len(fig.data[1].x) == 4


def test_reduce_mask_along_one_axis_keeps_the_rank_side():
    """A LoRA factor (smollm2: A is 8 x 576, B 576 x 8): only the long side is pooled, r stays r."""
    rng = np.random.default_rng(1)
    a = rng.random((8, 1100)) < 0.5
    red, f = pg.reduce_mask(a, 512, axis=1)
    assert f == 3 and red.shape == (8, 367)
    assert red[:, :366].sum() * 3 == pytest.approx(a[:, :1098].sum())  # whole cells: means of 3 columns
    assert red[:, 366] == pytest.approx(a[:, 1098:].mean(axis=1))  # ragged edge: its 2 real columns
    b = rng.random((1100, 8)) < 0.5
    red_b, fb = pg.reduce_mask(b, 512, axis=0)
    assert fb == 3 and red_b.shape == (367, 8)
    assert np.allclose(red_b, pg.reduce_mask(b.T, 512, axis=1)[0].T)
    assert pg.reduce_mask(a[:, :500], 512, axis=1)[1] == 1  # short enough: untouched
    with pytest.raises(ValueError):
        pg.reduce_mask(a, 512, axis=2)


def test_factor_masks_colours_and_rank_axis():
    """The title promises orange = trained, grey = frozen: the scale is grey -> orange whether the cells are
    single entries (0/1) or pooled fractions, and the rank axis shows one tick per index 0 ... r-1."""
    rng = np.random.default_rng(2)
    ma, mb = rng.random((8, 576)) < 0.5, rng.random((576, 8)) < 0.5
    ra, fa = pg.reduce_mask(ma, 512, axis=1)
    rb, fb = pg.reduce_mask(mb, 512, axis=0)
    assert ra.shape[0] == 8 and rb.shape[1] == 8
    for grid_a, grid_b, f_a, f_b in ((ra, rb, fa, fb), (ma.astype(np.float32), mb.astype(np.float32), 1, 1)):
        fig = F.factor_masks(grid_a, grid_b, "t", None, f_a, f_b)
        for tr in fig.data:
            scale = [tuple(c) for c in tr.colorscale]
            assert scale == [(0.0, F.FROZEN), (1.0, F.TRAINED)]
        assert fig.data[1].z.shape[0] == 8 and fig.layout.yaxis2.dtick == 1 and fig.layout.xaxis.dtick == 1
        assert fig.data[1].x[-1] == (grid_a.shape[1] - 1) * f_a  # columns in real units
    assert fig.data[1].showscale is False  # 0/1 cells: no colour bar needed
    assert F.factor_masks(ra, rb, "t", None, fa, fb).data[1].showscale is True  # fractions: a colour bar


def test_percent_axes_have_fixed_ticks_and_legends_stay_below_the_axis_title():
    from explorer.views import figures_runs as FR

    recs = [dict(step=s, phase="train", loss=1.0 / (s + 1), eval_accuracy=(0.5 if s % 5 == 0 else None))
            for s in range(20)]
    rows = [dict(name="a", method="LoRA", accuracy=0.62, trainable=1000, peak_bytes=2**20),
            dict(name="b", method="SMT", accuracy=0.8, trainable=5000, peak_bytes=2**21)]
    figs = [FR.accuracy_scatter(rows), FR.overlay_curves([("a", recs)], "accuracy"), FR.live_curves(recs)]
    axes = [figs[0].layout.yaxis, figs[1].layout.yaxis, figs[2].layout.yaxis2]
    for ax in axes:
        assert list(ax.tickvals) == [0, 20, 40, 60, 80, 100] and ax.tickmode == "array"
    for fig in figs:  # the legend sits on the container's bottom edge, under the x-axis title
        lg = fig.layout.legend
        assert lg.orientation == "h" and lg.yref == "container" and lg.y == 0 and lg.yanchor == "bottom"


def test_for_projector_enlarges_every_text_and_goes_dark(tiny_bert):
    from explorer.views import figures_runs as FR

    s = pg.summarize(tiny_bert, "tied-lora", dict(rank=4, preset="TL5"))
    recs = [dict(step=i, phase="train", loss=1.0, eval_accuracy=0.5) for i in range(3)]
    red, f = pg.reduce_mask(np.eye(64, dtype=bool))
    figs = [F.tied_diagram(pg.tied_structure(s), "tied"), FR.live_curves(recs),
            F.mask_heatmap(red, (64, 64), f, "mask"), F.count_bars(["a", "b"], [10, 10_000], "c")]
    for fig in figs:
        h0 = fig.layout.height
        ann0 = [a.font.size for a in fig.layout.annotations]
        out = F.for_projector(fig)
        assert out is not fig and fig.layout.height == h0  # a copy: a cached figure is not changed
        fig = out
        assert fig.layout.template.layout.plot_bgcolor == F.PROJECTOR_TEMPLATE.layout.plot_bgcolor
        assert fig.layout.font.size >= 20 and fig.layout.height == int(h0 * F.PROJ_SCALE)
        assert fig.layout.title.font.size > fig.layout.font.size
        assert fig.layout.xaxis.tickfont.size >= 20 and fig.layout.yaxis.title.font.size >= 20
        for a, before in zip(fig.layout.annotations, ann0):
            assert a.font.size >= 16 and a.font.size >= 1.5 * (before or 0) - 1
        for tr in fig.data:
            if getattr(tr, "showscale", None) and getattr(tr, "colorbar", None) is not None:
                assert tr.colorbar.tickfont.size >= 20
    # dark: light text on a dark plot area
    bg = F.PROJECTOR_TEMPLATE.layout.plot_bgcolor
    assert sum(int(bg[i:i + 2], 16) for i in (1, 3, 5)) < 3 * 60
    assert sum(int(F.PROJ_TEXT[i:i + 2], 16) for i in (1, 3, 5)) > 3 * 200


def test_every_knob_has_a_human_label():
    for name, info in METHODS.items():
        for kn in info.knobs:
            assert kn.label and "_" not in kn.label, (name, kn.name)
            assert kn.shown == kn.label


def test_wrap_title_balances_lines_and_keeps_words():
    t = "Trained (orange) and frozen (grey) entries of B and A"
    out = F.wrap_title(t, 52)
    lines = out.split("<br>")
    assert len(lines) == 2 and " ".join(lines) == t and abs(len(lines[0]) - len(lines[1])) <= 8
    assert F.wrap_title("short title", 52) == "short title"
    fig = F.for_projector(F.count_bars(["a"], [1], t))
    assert fig.layout.title.text == out and fig.layout.margin.t >= 3 * F.PROJ_FONT


def test_for_projector_log_axes_and_long_axis_titles():
    fig = F.for_projector(F.count_bars(["a", "b"], [10, 10_000_000], "Trainable parameters at default knobs on minilm"))
    assert fig.layout.xaxis.type == "log" and fig.layout.xaxis.dtick == 1  # one tick per decade
    assert "<br>" in fig.layout.xaxis.title.text  # "trainable parameters (count, log scale)" is long: wrapped
    assert all(len(line) <= F.PROJ_TITLE_CHARS + 4 for line in fig.layout.title.text.split("<br>"))


@pytest.mark.parametrize("preset", ["QLoRA: 65B on one 80 GB GPU", "LLaMA-2-70B across 8 GPUs: ZeRO-3 + checkpointing",
                                    "LLaMA-65B full fine-tuning > 1 TB"])
def test_projector_memory_chart_keeps_title_legend_and_plot_apart(preset):
    """Issue 21: in projector mode the wrapped title printed over the legend (which sat above the plot, in the
    same top margin), the y ticks and the bar labels.  The legend moves under the figure and the top margin holds
    every line of the title; where plotly draws them was measured in chromium (README, the report of issue 21)."""
    from explorer.views import memory_figures as MF
    from explorer.views import memory_views as V

    sch = V.page_schema()
    vals, _ = sch.parse({k: (",".join(v) if isinstance(v, list) else str(v))
                         for k, v in V.PRESETS[preset].values.items()})
    spec = V.spec_for_choice(vals["model"], vals)
    good = [r for r in V.estimate_rows(spec, vals) if "error" not in r]
    title = f"{spec.name}, {V.PRECISION_LABELS[vals['prec']]}, batch {vals['batch']} × {vals['seq']} tokens" + (
        f"<br>ZeRO-{vals['zero']} × {vals['gpus']} GPUs, {good[0]['scope_label']}" if vals["zero"] else "")
    fig = F.for_projector(MF.stack_figure(good, vals["unit"], title, "plotly_dark"))
    lg = fig.layout.legend
    assert lg.yref == "container" and lg.y == 0 and lg.yanchor == "bottom"  # under the figure, not in the top margin
    lines = fig.layout.title.text.count("<br>") + 1
    assert lines >= 2
    line_px = 1.3 * (F.PROJ_FONT + 6)
    assert fig.layout.margin.t >= F.PROJ_TITLE_PAD + lines * line_px + 16  # every title line above the plot
    h = fig.layout.height
    first_line_top = (1 - fig.layout.title.y) * h - 0.9 * (F.PROJ_FONT + 6)  # measured offset of a wrapped title
    assert F.PROJ_TITLE_PAD - 1 <= first_line_top <= F.PROJ_TITLE_PAD + 1  # not above the figure's edge


def test_exported_charts_open_offline():
    """Issue 21: the SMT inspector's HTML downloads loaded plotly.js from a CDN (no chart without the internet)."""
    import re

    from explorer.views import smt_views as V

    fig = F.count_bars(["a", "b"], [10, 1000], "counts")
    for html in (F.figure_html(fig), V.figure_html(fig)):
        srcs = re.findall(r"<script[^>]*\bsrc\s*=\s*[\"']?([^\"' >]+)", html, flags=re.I)
        assert not [s for s in srcs if re.match(r"(https?:)?//", s)], srcs
        assert "Plotly.newPlot" in html and len(html) > 1_000_000  # plotly.js itself is inside
