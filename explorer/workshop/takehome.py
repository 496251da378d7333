"""The workshop to take home, and the handout before it: one self-contained HTML file that prints, plus its JSON.

Pure Python (no streamlit)::

    doc = takehome_data(lesson, record=room.record(who=sid), runs=history.entries, board=board.entries(),
                        base_url="http://localhost:8501")      # JSON-able dict
    html = render_html(doc)                                   # one file: inline CSS and SVG, no script, no fetch
    doc = handout_data(lesson, base_url=...)                  # the same code, before the workshop

What a take-home holds: the lesson's steps, each with the link that reproduces its view (``base_url`` + the
page's path + its query; ``base_url`` "" keeps links relative), what to do and notice, the question; the room's
answers per question (counts or a histogram) with the truth revealed in the room and the participant's own
answer; the class board (a chart of accuracy against trainable parameters and a table); the participant's own
runs (final accuracy, trainable parameters, peak memory, knobs, and their accuracy curves).  Adapters stay the
downloads they are on Compare.  The handout holds the steps, links (with a QR code each when ``base_url`` is a
full address) and questions, and room to write predictions.
"""

from __future__ import annotations

import json
import math
import time
from html import escape

from explorer.views import svg_charts as S

__all__ = ["takehome_data", "handout_data", "render_html", "takehome_files", "FORMAT", "run_rows"]

FORMAT = "peft-explorer-takehome"
MAX_CURVE = 120  # points kept per run curve

CSS = """
@page { margin: 14mm; }
* { box-sizing: border-box; }
body { font-family: -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1b1b1b;
       max-width: 180mm; margin: 0 auto; padding: 8mm 0; font-size: 11pt; line-height: 1.4; }
h1 { font-size: 20pt; margin: 0 0 2mm; } h2 { font-size: 15pt; margin: 8mm 0 2mm; border-bottom: 1px solid #999; }
h3 { font-size: 12.5pt; margin: 0 0 1.5mm; }
.meta, .muted { color: #555; font-size: 9.5pt; }
section.step, section.run { break-inside: avoid; page-break-inside: avoid; border: 1px solid #ccc;
       border-radius: 2mm; padding: 3mm 4mm; margin: 3mm 0; }
table { border-collapse: collapse; width: 100%; font-size: 9.5pt; margin: 2mm 0; }
th, td { border-bottom: 1px solid #ddd; padding: 1mm 1.5mm; text-align: left; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
a.step-link { word-break: break-all; font-size: 9pt; }
.truth { border-left: 3px solid #E4572E; padding-left: 3mm; margin: 2mm 0; }
.q { background: #f4f4f4; padding: 2mm 3mm; margin: 2mm 0; }
.write { border-bottom: 1px dotted #777; height: 9mm; }
.qr { float: right; margin-left: 3mm; width: 25mm; } .qr svg { width: 25mm; height: 25mm; }
svg { max-width: 100%; height: auto; }
@media print { body { padding: 0; max-width: none; } a { color: #1b1b1b; } h2 { break-after: avoid; } }
"""


def _ts(t) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def _steps(lesson, base_url: str, agenda: list | None) -> list[dict]:
    spent = {a["index"]: a for a in agenda or []}
    out = []
    for st in lesson.steps:
        d = dict(index=st.index, title=st.title, page=st.page, page_title=st.page_title, do=st.do, notice=st.notice,
                 minutes=st.minutes, preset=st.preset, query=dict(st.query), link=st.link(base_url))
        if st.index in spent:
            d["spent_s"] = spent[st.index]["spent_s"]
        if st.question is not None:
            d["question"] = st.question.to_dict()
        out.append(d)
    return out


def _curve(records) -> list[list]:
    pts = [[r.get("step"), r.get("eval_accuracy")] for r in records or ()
           if isinstance(r, dict) and isinstance(r.get("eval_accuracy"), (int, float))]
    stride = max(1, math.ceil(len(pts) / MAX_CURVE))
    return pts[::stride] + ([pts[-1]] if pts and (len(pts) - 1) % stride else [])


def run_rows(entries) -> list[dict]:
    """A participant's runs (``explorer.workshop.history.RunEntry``) as the take-home keeps them."""
    from explorer.workshop.board_fields import clean_label, knobs_text

    rows = []
    for e in entries or ():
        c, s = e.config, e.summary
        rows.append(dict(id=str(e.id), title=clean_label(e.title(), 80), status=e.status,
                         method=str(c.get("method", "?")), model=clean_label(str(c.get("model", "?")).rsplit("/", 1)[-1], 60),
                         task=clean_label(s.get("task") or c.get("task") or "?", 60), knobs=knobs_text(c),
                         steps=s.get("steps_done"), trainable=s.get("trainable_params"),
                         base_accuracy=s.get("base_accuracy"), final_accuracy=s.get("final_accuracy"),
                         peak_bytes=s.get("peak_memory_bytes"), curve=_curve(e.records)))
    return rows


def takehome_data(lesson, record: dict | None = None, runs=(), board=(), base_url: str = "",
                  kind: str = "takehome", now: float | None = None) -> dict:
    """The take-home as data (see the module docstring); ``record``: ``Room.record(who=...)``; ``runs``: the
    participant's ``RunEntry`` objects; ``board``: the class board's public entries."""
    doc = dict(format=FORMAT, version=1, kind=kind, generated=float(now if now is not None else time.time()),
               base_url=base_url, lesson=dict(title=lesson.title, summary=lesson.summary, minutes=lesson.minutes,
                                              steps=_steps(lesson, base_url, (record or {}).get("agenda"))))
    if kind == "takehome":
        doc["room"] = None if record is None else {k: record[k] for k in ("run", "started", "ended", "questions")}
        doc["board"] = [{k: e.get(k) for k in ("name", "method", "model", "task", "knobs", "trainable", "accuracy",
                                               "peak_bytes", "steps", "created")} for e in board or ()]
        doc["runs"] = run_rows(runs)
    return doc


def handout_data(lesson, base_url: str = "", now: float | None = None) -> dict:
    """The printable handout of a lesson, before the workshop (the take-home's code, without the room)."""
    return takehome_data(lesson, base_url=base_url, kind="handout", now=now)


# ----------------------------------------------------------------------------- HTML


def _fmt_value(v, q: dict) -> str:
    if isinstance(v, list):
        return " and ".join(map(str, v))
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        unit = f" {q.get('unit')}" if q.get("unit") else ""
        return (f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}") + unit
    return str(v)


def _room_answers(qrec: dict, q: dict) -> str:
    t = qrec["tally"]
    parts = [f'<p class="muted">{t["n"]} answer{"s" if t["n"] != 1 else ""} from the room '
             f'({escape(qrec["status"])}).</p>']
    truth = qrec.get("truth")
    if t["kind"] == "choice" and t["n"]:
        hi = truth["value"] if truth else ()
        hi = hi if isinstance(hi, list) else [hi]
        parts.append(S.bars_svg([c["choice"] for c in t["counts"]], [c["count"] for c in t["counts"]],
                                "The room's answers", highlight=hi))
    elif t["kind"] == "number" and t["n"]:
        parts.append(S.histogram_svg(t["edges"], t["counts"], t["log"], "The room's answers", q.get("unit", ""),
                                     truth=truth["value"] if truth else None))
        parts.append(f'<p class="muted">median {escape(_fmt_value(t["median"], q))} · middle half '
                     f'{escape(_fmt_value(t["q1"], q))} to {escape(_fmt_value(t["q3"], q))}</p>')
    elif t["kind"] == "text" and t["n"]:
        parts.append("<p>" + " · ".join(f"{escape(a['text'])}" + (f" ({a['count']})" if a["count"] > 1 else "")
                                        for a in t["answers"]) + "</p>")
    if truth:
        right = f" {t['right']} of {t['n']} answered it" + (" (within 10 %)" if t["kind"] == "number" else "") + \
            "." if "right" in t else ""
        parts.append(f'<div class="truth"><b>Revealed:</b> {escape(truth["text"])}.{escape(right)}</div>')
    if qrec.get("yours") is not None:
        parts.append(f"<p><b>Your answer:</b> {escape(_fmt_value(qrec['yours'], q))}</p>")
    return "".join(parts)


def _step_html(st: dict, doc: dict, questions: dict) -> str:
    qr = ""
    if doc["kind"] == "handout" and doc["base_url"].startswith(("http://", "https://")):
        from explorer.workshop.joining import qr_inline_svg

        qr = f'<div class="qr">{qr_inline_svg(st["link"], scale=2)}</div>'
    spent = f" · {st['spent_s'] / 60:.0f} min in the room" if st.get("spent_s") else ""
    h = [f'<section class="step" id="step-{st["index"] + 1}">{qr}',
         f'<h3>{st["index"] + 1}. {escape(st["title"])}</h3>',
         f'<p class="meta">{escape(st["page_title"])} · {st["minutes"]:g} min planned{escape(spent)}'
         + (f' · preset “{escape(st["preset"])}”' if st.get("preset") else "") + "</p>",
         f'<p><b>Do:</b> {escape(st["do"])}</p><p><b>Notice:</b> {escape(st["notice"])}</p>',
         f'<p><a class="step-link" href="{escape(st["link"], quote=True)}">{escape(st["link"])}</a></p>']
    q = st.get("question")
    if q:
        choices = f" ({' · '.join(escape(c) for c in q['choices'])})" if q.get("choices") else ""
        h.append(f'<div class="q"><b>Question:</b> {escape(q["prompt"])}{choices}')
        if doc["kind"] == "handout":
            h.append('<div class="write"></div>')
        elif st["index"] in questions:
            h.append(_room_answers(questions[st["index"]], q))
        h.append("</div>")
    h.append('<div style="clear: both"></div></section>')
    return "".join(h)


def _board_html(entries: list) -> str:
    if not entries:
        return "<h2>The class board</h2><p class='muted'>No runs were shared to the class board.</p>"
    from explorer.methods import METHODS
    from explorer.views.figures import COLORS

    label = {k: m.short for k, m in METHODS.items()}
    colors = {label[k]: COLORS[m.color_slot % len(COLORS)] for k, m in METHODS.items()}
    chart = S.scatter_svg([(e["trainable"], 100 * e["accuracy"], label.get(e["method"], e["method"]))
                           for e in entries], "Final accuracy against trainable parameters", "trainable parameters",
                          "final accuracy (%)", log_x=True, colors=colors)
    rows = "".join(f"<tr><td>{escape(e['name'] or 'anonymous')}</td><td>{escape(label.get(e['method'], e['method']))}"
                   f"</td><td>{escape(e['model'])} · {escape(e['task'])}</td><td>{escape(e['knobs'])}</td>"
                   f"<td class='num'>{e['trainable']:,}</td><td class='num'>{100 * e['accuracy']:.1f} %</td></tr>"
                   for e in entries)
    return (f"<h2>The class board</h2>{chart}<table><tr><th>who</th><th>method</th><th>model · task</th>"
            f"<th>knobs</th><th class='num'>trainable</th><th class='num'>accuracy</th></tr>{rows}</table>")


def _pct(v) -> str:
    return f"{100 * v:.1f} %" if isinstance(v, (int, float)) else "—"


def _runs_html(runs: list) -> str:
    if not runs:
        return "<h2>Your runs</h2><p class='muted'>No runs in this session.</p>"
    from explorer.memory.units import compact_bytes

    chart = S.scatter_svg([(s, 100 * a, r["title"]) for r in runs for s, a in r["curve"]],
                          "Your runs: held-out accuracy", "step", "accuracy (%)", lines=True)
    rows = "".join(f"<tr><td>{escape(r['title'])}</td><td>{escape(r['status'])}</td><td>{escape(r['knobs'])}</td>"
                   f"<td class='num'>{r['trainable'] or 0:,}</td><td class='num'>{_pct(r['base_accuracy'])} → "
                   f"{_pct(r['final_accuracy'])}</td><td class='num'>"
                   f"{compact_bytes(r['peak_bytes'], 'GiB') if r['peak_bytes'] else '—'}</td></tr>" for r in runs)
    return (f"<h2>Your runs</h2>{chart}<table><tr><th>run</th><th>status</th><th>knobs</th><th class='num'>trainable"
            f"</th><th class='num'>accuracy</th><th class='num'>peak memory</th></tr>{rows}</table>"
            "<p class='muted'>Metrics and adapters of each run: the downloads on the Compare page.</p>")


def render_html(doc: dict) -> str:
    """One self-contained HTML page for ``doc`` (:func:`takehome_data` / :func:`handout_data`): inline CSS and
    SVG, no script, nothing fetched; prints on A4 and Letter."""
    L = doc["lesson"]
    room = doc.get("room") or {}
    questions = {q["step"]: q for q in room.get("questions", [])}
    what = "Handout" if doc["kind"] == "handout" else "Take-home"
    when = _ts(room.get("started")) or _ts(doc["generated"])
    base = doc["base_url"] or "the address of your PEFT Explorer"
    agenda = "".join(f"<tr><td>{s['index'] + 1}</td><td><a href='#step-{s['index'] + 1}'>{escape(s['title'])}</a></td>"
                     f"<td>{escape(s['page_title'])}</td><td class='num'>{s['minutes']:g}</td>"
                     + (f"<td class='num'>{s.get('spent_s', 0) / 60:.1f}</td>" if doc["kind"] == "takehome" else "")
                     + "</tr>" for s in L["steps"])
    spent_head = "<th class='num'>min spent</th>" if doc["kind"] == "takehome" else ""
    body = [f"<h1>{escape(L['title'])}</h1>",
            f"<p class='meta'>{what} · PEFT Explorer · {escape(when)} · {L['minutes']:g} minutes planned</p>",
            f"<p>{escape(L['summary'])}</p>" if L.get("summary") else "",
            f"<p class='muted'>Each step's link opens its view with the same settings on {escape(base)} "
            "(at home: <code>make run</code>, then open the link with your own address).</p>",
            f"<h2>Agenda</h2><table><tr><th>#</th><th>step</th><th>page</th><th class='num'>min planned</th>"
            f"{spent_head}</tr>{agenda}</table>", "<h2>Steps</h2>"]
    body += [_step_html(st, doc, questions) for st in L["steps"]]
    if doc["kind"] == "takehome":
        body += [_board_html(doc.get("board") or []), _runs_html(doc.get("runs") or [])]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(L['title'])} · {what}</title><style>{CSS}</style></head><body>"
            + "".join(body) + "</body></html>")


def takehome_files(doc: dict) -> tuple[bytes, bytes]:
    """(HTML, JSON) bytes of ``doc`` for two downloads."""
    return render_html(doc).encode("utf-8"), json.dumps(doc, indent=1, ensure_ascii=False, default=str).encode()
