"""Every chart's text alternative is read from the figure: what it shows in words, its numbers as a table and a
CSV (explorer.views.figure_text), and the pages draw it under every chart (ui.modes.show_fig)."""

from __future__ import annotations

import csv
import io

import numpy as np
import plotly.graph_objects as go

from tests.support.apptest import no_problem, open_page
from explorer.views import figure_text as T
from explorer.views import figures as F


def test_bars_on_a_log_axis_say_so_and_list_every_bar():
    fig = F.count_bars(["LoRA", "SMT", "VeRA"], [147_456, 4_096, 9_000], "Trainable <b>parameters</b>", None)
    text = T.describe(fig)
    assert text.startswith("Trainable parameters: bars, 3 values")
    assert "log scale" in text and text.count("log scale") == 1
    cols, rows = T.rows(fig)
    assert cols[:2] == ["item", "trainable parameters (count, log scale)"]  # one unnamed series: no series column
    assert [(r[0], r[1]) for r in rows] == [("LoRA", 147_456), ("SMT", 4_096), ("VeRA", 9_000)]
    assert T.markdown_table(fig).splitlines()[2] == "| LoRA | 147,456 | 147,456 |"


def test_series_names_and_axes_of_a_line_chart():
    fig = go.Figure([go.Scatter(x=[0, 10, 20], y=[0.5, 0.7, 0.9], name="LoRA"),
                     go.Scatter(x=[0, 10], y=[0.5, 0.6], name="SMT")],
                    layout=dict(title="Held-out accuracy", xaxis_title="step", yaxis_title="accuracy"))
    assert T.describe(fig) == ("Held-out accuracy: points and lines, 5 values in 2 series (LoRA, SMT); "
                               "x: step, y: accuracy.")
    cols, rows = T.rows(fig)
    assert cols == ["series", "step", "accuracy"] and rows[3] == ["SMT", 0, 0.5] and len(rows) == 5


def test_an_untitled_chart_is_named_after_its_axes():
    fig = go.Figure([go.Scatter(x=[1, 2], y=[0.5, 0.9], name="LoRA")],
                    layout=dict(xaxis_title="trainable <b>parameters</b>", yaxis_title="held-out accuracy (%)"))
    assert T.axes_name(fig) == "held-out accuracy (%) against trainable parameters"
    bars = go.Figure([go.Bar(x=[3.0, 4.0], y=["run1", "run2"], orientation="h")],
                     layout=dict(xaxis_title="MiB", yaxis_title="run"))
    assert T.axes_name(bars) == "MiB against run"  # horizontal bars: the values are on x
    assert T.axes_name(go.Figure([go.Scatter(x=[1], y=[2])])) == ""  # no axis titles: no name made up


def test_a_heatmap_gives_its_size_its_range_and_every_cell_in_the_csv():
    z = np.arange(12, dtype=float).reshape(3, 4)
    z[1, 2] = np.nan
    fig = go.Figure(go.Heatmap(z=z), layout=dict(title="Blocks"))
    assert T.describe(fig) == "Blocks: a heatmap of 3 × 4 cells, values from 0 to 11."
    grid = list(csv.reader(io.StringIO(T.to_csv(fig))))
    assert grid[0] == ["heatmap: Blocks"] and len(grid) == 4 and grid[3][1:] == ["8.0", "9.0", "10.0", "11.0"]


def test_an_empty_chart_says_it_has_no_data():
    assert T.describe(go.Figure(layout=dict(title="Nothing yet"))) == "Nothing yet: no data to show."


def test_every_chart_on_home_has_its_text_alternative():
    at = open_page("app.py")
    no_problem(at)
    charts = at.get("plotly_chart")
    labels = [e.label for e in at.expander if e.label.startswith("Chart as text:")]
    assert charts and len(labels) == len(charts)
    assert labels[0] == "Chart as text: Trainable parameters at default knobs on minilm"
    assert any(m.value.startswith("Trainable parameters at default knobs on minilm: bars, 8 values")
               for m in at.markdown)
