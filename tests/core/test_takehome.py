"""The take-home and the handout (explorer/workshop/takehome.py, explorer/views/svg_charts.py) and joining
(explorer/workshop/joining.py): one self-contained HTML file with no external resource, links that reproduce the
steps, hostile text escaped, the JSON behind it; the join address and its QR code."""

import json
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest

from explorer.views import pages as P
from explorer.workshop.history import RunEntry
from explorer.workshop.joining import JoinInfo, check_public_url, join_url, qr_png, qr_svg
from explorer.workshop.lessons import bundled_lessons
from explorer.workshop.room import Room
from explorer.workshop.takehome import handout_data, render_html, takehome_data, takehome_files

TOKEN = "takehome-token-1"
BASE = "http://10.1.2.3:8501"


class Links(HTMLParser):
    """Every URL-bearing attribute and every <script>/<style>/<link> in a page."""

    def __init__(self):
        super().__init__()
        self.resources, self.anchors, self.tags = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "a":
            self.anchors.append((a.get("class"), a.get("href")))
        for key in ("src", "href", "xlink:href", "data", "action", "srcset", "poster"):
            if key in a and tag != "a":
                self.resources.append((tag, key, a[key]))


def parsed(html: str) -> Links:
    p = Links()
    p.feed(html)
    return p


@pytest.fixture
def room_record(tmp_path, monkeypatch):
    """A finished run of 'What LoRA trains' with answers and two revealed truths."""
    from explorer.workshop.truths import TruthContext

    monkeypatch.setenv("PEFT_EXPLORER_INSTRUCTOR_TOKEN", TOKEN)
    lesson = bundled_lessons()["What LoRA trains"]
    room = Room(tmp_path / "room.sqlite")
    room.start(lesson, TOKEN, "teacher")
    room.answer("me", 0, "VeRA")
    room.answer("you", 0, "Tied-LoRA")
    room.reveal(0, TOKEN, "teacher")
    room.move("next", TOKEN, "teacher")
    for who, v in (("me", "150k"), ("you", "2e6"), ("them", "900")):
        room.answer(who, 1, v)
    room.reveal(1, TOKEN, "teacher", ctx=TruthContext())
    room.end(TOKEN, "teacher")
    return lesson, room.record(who="me")


def hostile_run():
    return RunEntry(id="r1", label="<script>alert('run')</script>", created=time.time(),
                    config=dict(method="lora", model="/home/ada/secret/minilm", task="colour-shape",
                                knobs=dict(rank=8, targets=["q", "v"])),
                    summary=dict(status="finished", final_accuracy=0.9, base_accuracy=0.5, trainable_params=74498,
                                 peak_memory_bytes=2 ** 28, steps_done=60, task="colour-shape"),
                    records=[dict(step=0, phase="eval", eval_accuracy=0.5), dict(step=30, loss=0.5),
                             dict(step=60, phase="eval", eval_accuracy=0.9)])


BOARD = [dict(id=1, name="<img src=x onerror=alert(1)>", method="lora", model="minilm", task="colour-shape",
              knobs="rank=8", trainable=74498, accuracy=0.91, peak_bytes=None, steps=150, created=1.0, hidden=False),
         dict(id=2, name="", method="smt", model="minilm", task="colour-shape", knobs="", trainable=226050,
              accuracy=0.95, peak_bytes=10 ** 8, steps=150, created=2.0, hidden=False)]


def test_the_take_home_is_one_file_with_no_external_resource_and_its_links_reproduce_the_steps(room_record):
    lesson, record = room_record
    doc = takehome_data(lesson, record, runs=[hostile_run()], board=BOARD, base_url=BASE)
    html, raw = takehome_files(doc)
    text = html.decode()
    p = parsed(text)
    # nothing is fetched: no script at all, no stylesheet link, no src, no CSS url() or @import
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags and "img" not in p.tags
    assert p.resources == [] or all(v.startswith("#") for _, _, v in p.resources)
    assert "url(" not in text and "@import" not in text and "cdn" not in text.lower()
    # the hostile run label and board name are text, not markup
    assert "<script" not in text and "scriptalert(&#x27;run&#x27;)/script" in text  # cleaned like a board label
    assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert "/home/ada" not in text and "/home/ada" not in raw.decode()
    # every step link opens the step's view: its page, and its settings read back unchanged
    links = [href for cls, href in p.anchors if cls == "step-link"]
    assert len(links) == len(lesson.steps)
    for step, href in zip(lesson.steps, links):
        u = urlsplit(href)
        assert f"{u.scheme}://{u.netloc}" == BASE and P.page_for_path(u.path) == step.page
        q = {k: v[-1] for k, v in parse_qs(u.query, keep_blank_values=True).items()}
        assert P.page_schema(step.page, q).parse(q) == (step.values, [])
    # the JSON behind it: the room's answers, the revealed truths, your answers, the board, your runs
    data = json.loads(raw)
    assert data["format"] == "peft-explorer-takehome" and data["kind"] == "takehome"
    qs = {q["step"]: q for q in data["room"]["questions"]}
    assert qs[0]["truth"]["value"] == "Tied-LoRA" and qs[0]["yours"] == "VeRA" and qs[0]["tally"]["n"] == 2
    assert qs[1]["truth"]["value"] == 147456 and qs[1]["tally"]["log"] is True and qs[1]["yours"] == 150000.0
    assert "147,456 trainable parameters" in text and "Your answer:</b> 150,000 parameters" in text
    assert [s["link"] for s in data["lesson"]["steps"]] == links
    assert data["runs"][0]["curve"] == [[0, 0.5], [60, 0.9]] and data["runs"][0]["model"] == "minilm"
    assert len(data["board"]) == 2 and text.count("<svg") >= 4  # two answer charts, the board, the runs


def test_the_handout_comes_from_the_same_code_with_a_qr_code_per_step():
    lesson = bundled_lessons()["Sparse methods"]
    doc = handout_data(lesson, base_url=BASE)
    text = render_html(doc)
    p = parsed(text)
    assert "script" not in p.tags and p.resources == []
    assert text.count('class="qr"') == len(lesson.steps) and text.count('class="write"') == 4
    assert "room" not in doc and "The class board" not in text
    assert [h for c, h in p.anchors if c == "step-link"] == [s.link(BASE) for s in lesson.steps]
    # a relative handout (no address yet) has relative links and no QR codes
    rel = render_html(handout_data(lesson))
    assert 'class="qr"' not in rel and 'href="Methods_playground?model=minilm' in rel


def test_the_take_home_prints_on_one_column_with_print_rules():
    text = render_html(handout_data(bundled_lessons()["What LoRA trains"]))
    assert "@page" in text and "@media print" in text and "break-inside: avoid" in text
    assert "max-width: 180mm" in text  # narrower than A4 (210 mm) and Letter (216 mm) less margins


def test_every_chart_is_well_formed_svg(room_record):
    lesson, record = room_record
    text = render_html(takehome_data(lesson, record, runs=[hostile_run()], board=BOARD, base_url=BASE))
    svgs = [s[: s.index("</svg>") + 6] for s in text.split("<svg")[1:]]
    for s in svgs:
        root = ET.fromstring("<svg" + s)  # well-formed XML: every text escaped
        assert root.tag.endswith("svg") and not [e for e in root.iter() if e.tag.endswith(("script", "image"))]
        assert "<script" not in s and "href" not in s
    assert len(svgs) == 4


# ----------------------------------------------------------------------------- joining


def test_the_join_address_comes_from_the_setting_or_the_server():
    env = {"PEFT_EXPLORER_PUBLIC_URL": "https://peft.example.org/workshop/"}
    assert join_url("localhost:8501", environ=env) == JoinInfo("https://peft.example.org/workshop", "setting")
    assert join_url("laptop.lan:8501", environ={}) == JoinInfo("http://laptop.lan:8501", "server")
    got = join_url("localhost:8501", environ={}, lan=lambda: "192.168.1.20")
    assert got.url == "http://192.168.1.20:8501" and got.source == "network" and "PEFT_EXPLORER_PUBLIC_URL" in got.warning
    alone = join_url("127.0.0.1:9000", environ={}, lan=lambda: None)
    assert alone.url == "http://127.0.0.1:9000" and "only works on this machine" in alone.warning
    bad = join_url("laptop.lan:8501", environ={"PEFT_EXPLORER_PUBLIC_URL": "javascript:alert(1)"})
    assert bad.url == "http://laptop.lan:8501" and bad.warning.startswith("PEFT_EXPLORER_PUBLIC_URL must start with")
    for url, msg in (("http://u:p@h", "user name or password"), ("http://h/?a=1", "query"), ("h:8501", "http"),
                     ("http://h:99999", "invalid port"), ("http://a b", "without spaces")):
        with pytest.raises(ValueError, match=msg):
            check_public_url(url)


def test_the_qr_code_is_svg_and_png_bytes_of_the_address():
    import segno

    url = "http://192.168.1.20:8501"
    svg, png = qr_svg(url), qr_png(url)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and png[:8] == b"\x89PNG\r\n\x1a\n"
    # the same symbol segno makes for the address (version, error level, modules), and another address differs
    ref = segno.make(url, error="m", micro=False)
    assert ref.designator.endswith("M") and root.get("width") == str((ref.symbol_size(scale=8, border=2))[0])
    assert qr_svg(url + "/x") != svg
