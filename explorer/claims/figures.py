"""Charts of the claims lab (plotly, no Streamlit): accuracy against trainable parameters, mean over seeds with
its 95 % t-interval as the error bar, every seed as a small dot."""

from __future__ import annotations

import plotly.graph_objects as go

from explorer.views.figures import legend_below, log_axis, pct_axis

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D"]


def claim_figure(doc: dict, height: int = 380) -> go.Figure:
    """``doc``: a results document (or the live partial one): its ``arms`` summaries and ``records``."""
    arms = doc.get("arms") or []
    groups: dict[str, list[dict]] = {}
    for a in arms:
        groups.setdefault(a["group"], []).append(a)
    fig = go.Figure()
    for i, (g, items) in enumerate(groups.items()):
        colour = PALETTE[i % len(PALETTE)]
        items = sorted([a for a in items if a.get("adapter_params")], key=lambda a: a["adapter_params"])
        xs = [a["adapter_params"] for a in items if a["mean"] is not None]
        ys = [a["mean"] for a in items if a["mean"] is not None]
        err = [a["half"] or 0.0 for a in items if a["mean"] is not None]
        texts = [f"{a['label']}<br>mean {a['mean']:.3f} over {len(a['accuracy'])} seeds"
                 + (f"<br>95 % CI [{a['lo']:.3f}, {a['hi']:.3f}]" if a["lo"] is not None else "")
                 + f"<br>{a['adapter_params']:,} adapter parameters" for a in items if a["mean"] is not None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers" if len(xs) > 1 else "markers", name=g,
                                 marker=dict(size=10, color=colour), line=dict(color=colour),
                                 error_y=dict(type="data", array=err, visible=True, thickness=1.5, width=6),
                                 hovertext=texts, hoverinfo="text"))
        sx, sy, st = [], [], []
        for a in items:
            losses = a.get("eval_loss") or [None] * len(a["accuracy"])
            for s, acc, loss in zip(a.get("seeds") or [], a["accuracy"], losses):
                sx.append(a["adapter_params"])
                sy.append(acc)
                st.append(f"{a['label']} · seed {s}: {acc:.3f}"
                          + (f" · held-out loss {loss:.4f}" if loss is not None else ""))
        if sx:
            fig.add_trace(go.Scatter(x=sx, y=sy, mode="markers", name=f"{g} (seeds)", showlegend=False,
                                     marker=dict(size=5, color=colour, opacity=0.45, symbol="circle-open"),
                                     hovertext=st, hoverinfo="text"))
    xs_all = [a["adapter_params"] for a in arms if a.get("adapter_params") and a.get("mean") is not None]
    fig.update_layout(height=height, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis=dict(title="trainable adapter parameters (classification head not counted)",
                                 type="log"),
                      yaxis=dict(title="held-out accuracy (%)"))
    legend_below(fig)  # on the figure's bottom edge, under the x title (never on it)
    if xs_all:  # labelled ticks however narrow the range (log_axis pads it and always labels 3 or more)
        fig.update_xaxes(**log_axis(xs_all))
    ys_all = [y for tr in fig.data for y in (tr.y or ())]
    ys_all += [a["mean"] + s * (a["half"] or 0.0) for a in arms if a.get("mean") is not None for s in (-1, 1)]
    if ys_all:  # even steps, each label with the decimals its step needs: never "95 %, 95 %, 94 %"
        fig.update_yaxes(**pct_axis(min(ys_all), max(ys_all), pad=0.005))
    return fig
