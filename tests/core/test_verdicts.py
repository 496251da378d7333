"""Words on screen computed from the data (explorer.views.verdicts): each branch with numbers checked by hand."""

import math

from explorer.views.verdicts import Z, binomial_se, budget_verdict, differs, learning_verdict


def test_binomial_se_by_hand():
    assert math.isclose(binomial_se(0.5, 200), math.sqrt(0.25 / 200))
    assert binomial_se(1.0, 100) > 0  # clipped: never zero


def test_differs_uses_two_standard_errors():
    n = 200
    se = math.hypot(math.sqrt(0.25 / n), math.sqrt(0.25 / n))  # both near 0.5
    assert not differs(0.5, 0.5 + 0.9 * Z * se, n, n)
    assert differs(0.5, 0.5 + 1.3 * Z * se, n, n)


def test_learning_verdict():
    assert learning_verdict(0.535, 0.535, 200).kind == "nothing-learned"  # the issue's flat default run
    assert learning_verdict(0.51, 0.53, 200).kind == "nothing-learned"  # within noise
    v = learning_verdict(0.52, 0.97, 200)
    assert v.kind == "learned" and "52.0%" in v.text and "97.0%" in v.text
    assert learning_verdict(0.6, 0.3, 200).kind == "nothing-learned"  # worse is not learning
    assert learning_verdict(None, 0.9, 200) is None


def test_budget_verdict_branches():
    flat = [(b, 0.51, 0.51, 200) for b in (100, 200, 400, 800)]  # the issue's tiny-bert sweep: all 51 %
    assert budget_verdict(flat).kind == "nothing-learned"
    plateau = [(100, 0.60, 0.5, 500), (200, 0.85, 0.5, 500), (400, 0.90, 0.5, 500), (800, 0.905, 0.5, 500)]
    v = budget_verdict(plateau)
    assert v.kind == "plateau" and "plateau" in v.text
    rising = [(100, 0.60, 0.5, 500), (200, 0.70, 0.5, 500), (400, 0.80, 0.5, 500)]
    assert budget_verdict(rising).kind == "rising"
    assert budget_verdict(rising[:2]).kind == "too-few"
    zigzag = [(100, 0.80, 0.5, 500), (200, 0.95, 0.5, 500), (400, 0.70, 0.5, 500)]
    assert budget_verdict(zigzag).kind == "unclear"
    assert budget_verdict([]).kind == "too-few"


def test_a_rise_over_the_whole_sweep_is_never_called_a_plateau():
    """Issue 21: LoRA 86.5 / 91.0 / 94.5 % on 200 examples read "plateau: 91.0 % and 94.5 % are within noise,
    after rising" while its line rose to the end.  The last step is within noise, but the gain per doubling did
    not fall (+2.3, then +1.7 points): the verdict says it rose and that 200 examples cannot tell more."""
    sweep = [(4866, 0.865, 0.185, 200), (19464, 0.91, 0.185, 200), (77856, 0.945, 0.185, 200)]
    v = budget_verdict(sweep)
    assert v.kind == "rose" and not v.text.startswith("plateau")
    assert "86.5%" in v.text and "94.5%" in v.text and "+3.5 points" in v.text and "200 held-out" in v.text


def test_a_plateau_needs_the_curve_to_bend_beyond_noise():
    from scipy.stats import norm

    from explorer.views.verdicts import one_sided_p

    bent = [(1000, 0.60, 0.5, 500), (4000, 0.90, 0.5, 500), (16000, 0.91, 0.5, 500)]
    v = budget_verdict(bent)
    assert v.kind == "plateau" and "+15.0 to +0.5 points" in v.text  # per doubling: 30 / 2, 1 / 2
    assert one_sided_p(1.5) == norm.sf(1.5)
    mild = [(1000, 0.80, 0.5, 500), (4000, 0.90, 0.5, 500), (16000, 0.91, 0.5, 500)]
    assert budget_verdict(mild).kind == "plateau"  # +5.0, then +0.5 points per doubling on 500 examples
    # the same curve on 50 examples: the bend is within noise -> no plateau
    assert budget_verdict([(b, a, 0.5, 50) for b, a, _, _ in mild]).kind != "plateau"


def test_budget_verdict_pools_runs_at_one_budget_and_names_a_fall():
    twice = [(100, 0.60, 0.5, 500), (100, 0.62, 0.5, 500), (200, 0.85, 0.5, 500), (400, 0.90, 0.5, 500),
             (800, 0.905, 0.5, 500)]
    assert budget_verdict(twice).kind == "plateau"  # no division by a zero budget step
    fall = [(100, 0.95, 0.5, 500), (200, 0.90, 0.5, 500), (400, 0.80, 0.5, 500)]
    v = budget_verdict(fall)
    assert v.kind == "unclear" and "below the smallest beyond noise" in v.text


def _row(i, method, task, budget_knob, acc, trainable, steps=60, seed=0):
    knobs = (dict(rank=budget_knob, alpha=2.0 * budget_knob, targets=["q", "v"]) if method == "lora" else
             dict(blocks=budget_knob, block_size=32, targets=["q", "v"], warmup_mode="full", warmup_steps=15))
    return dict(id=f"run{i}", name=f"run {i}", method=method, model="minilm", task=task, trainable=trainable,
                accuracy=acc, base_accuracy=0.185, eval_n=200, peak_bytes=(100 + i) * 2**20,
                config=dict(model="minilm", task=task, method=method, knobs=knobs, steps=steps, seed=seed,
                            lr=None, eval_every=max(2, steps // 6)))


def _issue_history():
    """The issue's session: the Compare lesson's colour-shape runs, then the bbc-news sweep."""
    return [_row(1, "lora", "colour-shape", 8, 0.955, 75653, steps=120),
            _row(2, "smt", "colour-shape", 72, 0.945, 75653, steps=120),
            _row(3, "lora", "bbc-news", 1, 0.865, 4866), _row(4, "lora", "bbc-news", 4, 0.91, 19464),
            _row(5, "lora", "bbc-news", 16, 0.945, 77856),
            _row(6, "smt", "bbc-news", 5, 0.86, 5120), _row(7, "smt", "bbc-news", 19, 0.90, 19456),
            _row(8, "smt", "bbc-news", 76, 0.92, 77824)]


def test_sweeps_are_series_and_other_runs_single_points():
    from explorer.views.run_series import split_series, trend_lines

    series, singles = split_series(_issue_history())
    assert [s.ids for s in series] == [["run3", "run4", "run5"], ["run6", "run7", "run8"]]
    assert [r["id"] for r in singles] == ["run1", "run2"]
    # the same sweep run twice: two lines, not one zig-zag through both
    again = _issue_history()[2:5] + [dict(r, id=f"b{r['id']}", accuracy=r["accuracy"] - 0.01)
                                     for r in _issue_history()[2:5]]
    assert [s.ids for s in split_series(again)[0]] == [["run3", "run4", "run5"], ["brun3", "brun4", "brun5"]]
    lines = trend_lines(_issue_history())
    assert lines[0].startswith("**lora** (minilm, bbc-news; 60 steps, seed 0; 3 runs") and "rose:" in lines[0]
    assert "2 runs" in lines[2] and "single points" in lines[2]


def test_the_compare_chart_draws_one_line_per_sweep_and_a_panel_per_task():
    from explorer.views import figures_runs as FR

    fig = FR.accuracy_scatter(_issue_history())
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    dots = [t for t in fig.data if t.mode == "markers"]
    assert [list(t.x) for t in lines] == [[4866, 19464, 77856], [5120, 19456, 77824]]
    assert len(dots) == 2 and all(len(t.x) == 1 for t in dots)
    assert {t.xaxis for t in lines} == {"x2"} and {t.xaxis for t in dots} == {"x"}  # one panel per task
    assert [a.text for a in fig.layout.annotations] == ["minilm · colour-shape", "minilm · bbc-news",
                                                        "trainable parameters (log scale)"]  # one x title for both
    assert len(fig.layout.xaxis2.ticktext) >= 3  # the log axis is labelled
