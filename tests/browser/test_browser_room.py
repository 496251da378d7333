"""A live lesson as a room walks it, in the real server and Debian's chromium: one teacher, three participants.

The teacher (projector mode) unlocks the Lesson page with the instructor token, starts "What LoRA trains" and moves
three steps (the last by keyboard: the skip link, then Enter on Next).  The three participants opened the join
address (Home) before the start: each page follows to every step and shows the step's settings (the address
parses to the step's values, the rank sliders read them); one switches following off and stays on its step, then
comes "Back to the lesson".  They answer the step's question from the banner; the teacher's projector view counts
the answers and draws them; the reveal shows the truth computed by the project (147,456 = 6 layers x 2 targets x
r 16 x (384 + 384)).  The take-home downloaded from the Lesson page opens, holds the answers and the truth, and each
of its links opens its step's view.  axe-core finds no serious or critical violation on the teacher's Lesson page
and a participant's banner, in light and projector mode.

Follow times are written to ``tests/artifacts/room_walk.json`` for information; the bound is measured by
``benchmarks/lesson_follow.py``, not asserted here (the waits below only fail a page that never follows).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from tests.support.browser import CHROMIUM, FOCUSED, ROOT, SHOTS, axe_serious, page_errors, skip_to, wait_idle

from explorer.views.pages import page_for_path
from explorer.workshop.follow import Go, shows_step
from explorer.workshop.lessons import bundled_lessons
from tools.streamlit_server import serve

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                                      reason=f"{CHROMIUM} is absent (make browser)")]

TOKEN = "a-room-test-token"
LESSON = bundled_lessons()["What LoRA trains"]
FOLLOW_WAIT = 60.0  # seconds before a page that never follows fails (not a bound: see the module's docstring)
ARTIFACTS = ROOT / "tests" / "artifacts"


@pytest.fixture(scope="module")
def room_server(tmp_path_factory):
    d = tmp_path_factory.mktemp("room")
    env = {"PEFT_EXPLORER_INSTRUCTOR_TOKEN": TOKEN, "PEFT_EXPLORER_ROOM": d / "room.sqlite",
           "PEFT_EXPLORER_BOARD": d / "board.sqlite", "PEFT_EXPLORER_SESSIONS": d / "sessions"}
    log = ROOT / ".pytest_cache" / "room_server.log" if (ROOT / ".pytest_cache").exists() else None
    with serve(env=env, log=log) as srv:
        yield srv.url


def step_go(k: int) -> Go:
    s = LESSON.steps[k]
    return Go(key=(0, k), page=s.page, file="", url_path="", query=dict(s.query), values=dict(s.values))


def href(page) -> str:
    """The address bar as the page has it (playwright's ``page.url`` misses some of Streamlit's history updates)."""
    return page.evaluate("() => location.href")


def page_shows(page, k: int) -> bool:
    """The page's address is step k's view (the participant's own keys aside)."""
    u = urlsplit(href(page))
    return shows_step(step_go(k), page_for_path(u.path) or "", dict(parse_qsl(u.query)))


def banner(page):
    return page.locator(".st-key-lesson-banner")


def banner_says(page, text: str) -> bool:
    b = banner(page)
    return b.count() > 0 and text in b.first.inner_text()


def wait_until(pred, what: str, timeout: float = FOLLOW_WAIT) -> float:
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - t0


def open_ctx(browser, url: str, height: int = 1500):  # noqa: F811 - the fixture's object
    ctx = browser.new_context(viewport={"width": 1440, "height": height}, accept_downloads=True)
    page = ctx.new_page()
    page.goto(url, wait_until="domcontentloaded", timeout=30_000)
    page.wait_for_selector('[data-testid="stSidebar"]', timeout=90_000)
    wait_idle(page, timeout=120)
    return ctx, page


def click_key(page, key: str) -> None:
    page.locator(f".st-key-{key} button").first.click()


def ranks(page) -> list[str]:
    """The values the "rank r" sliders show (left, right)."""
    return [s.locator('[data-testid="stSliderThumbValue"]').first.inner_text()
            for s in page.locator('[data-testid="stSlider"]').filter(has_text="rank r").all()]


def answer(page, text: str) -> None:
    box = banner(page).locator('input[type="text"]').first
    box.fill(text)
    banner(page).get_by_role("button", name="Send my answer").click()
    wait_until(lambda: banner_says(page, "Your answer:"), "the answer is confirmed in the banner", 30)


def metric(page, label: str) -> str:
    m = page.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return m.locator('[data-testid="stMetricValue"]').inner_text() if m.count() else ""


README_SHOTS = ("lesson_projector_answers", "lesson_teacher")  # UPDATE_SCREENSHOTS=1: the README's copies


def shot(page, name: str) -> None:
    where = SHOTS if name in README_SHOTS else ARTIFACTS / "screenshots"
    where.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(where / f"{name}.png"), full_page=False)


def no_axe_problem(page, where: str) -> None:
    bad = axe_serious(page)
    assert not bad, f"{where}: axe-core finds {bad}"


def test_a_room_follows_the_teacher_answers_and_takes_the_workshop_home(room_server, browser):  # noqa: F811
    times: dict[str, list[float]] = {}
    ctxs = []
    try:
        # ---------------------------------------------------------------- the room joins, the teacher starts
        parts = []
        for i, q in enumerate(("", "", "?proj=1")):  # the third participant's laptop is in projector mode
            ctx, p = open_ctx(browser, f"{room_server}/{q}")
            ctxs.append(ctx)
            parts.append(p)
        tctx, teacher = open_ctx(browser, f"{room_server}/Lesson?proj=1", height=2400)
        ctxs.append(tctx)
        assert banner(parts[0]).count() == 0  # no lesson yet: no banner
        teacher.locator('input[aria-label="Instructor token"]').fill("not the token")
        click_key(teacher, "lesson_unlock")
        wait_until(lambda: teacher.get_by_text("Refused: wrong instructor token.").count() > 0, "a wrong token refused")
        teacher.locator('input[aria-label="Instructor token"]').fill(TOKEN)
        click_key(teacher, "lesson_unlock")
        teacher.locator(".st-key-lesson_start").wait_for(timeout=30_000)
        assert TOKEN not in href(teacher)
        click_key(teacher, "lesson_start")
        t0 = time.monotonic()
        for i, p in enumerate(parts):  # step 1 is Home, where the participants are
            wait_until(lambda: banner_says(p, "Step 1 of 5") and page_shows(p, 0), f"participant {i}: step 1")
            times.setdefault("start", []).append(time.monotonic() - t0)
        wait_idle(teacher)

        # ---------------------------------------------------------------- step 2: follow, answer, reveal
        def move(k: int, followers, by_keyboard: bool = False) -> None:
            if by_keyboard:  # from the top of the page (a click there moves chromium's Tab starting point)
                teacher.locator('[data-testid="stSidebarHeader"], [data-testid="stSidebar"]').first.click(
                    position={"x": 4, "y": 4})
                presses = skip_to(teacher, "the lesson controls")
                tag, text = teacher.evaluate(FOCUSED)
                assert tag == "BUTTON" and "Next step" in text and presses <= 6, (tag, text, presses)
                teacher.keyboard.press("Enter")
            else:
                click_key(teacher, "lesson_next")
            t0 = time.monotonic()
            for i, p in followers:
                wait_until(lambda: banner_says(p, f"Step {k + 1} of 5") and page_shows(p, k),
                           f"participant {i}: step {k + 1}")
                times.setdefault(f"step {k + 1}", []).append(time.monotonic() - t0)
            wait_until(lambda: teacher.get_by_text(f"Step {k + 1} of 5:").count() > 0, "the teacher's page moved")

        move(1, list(enumerate(parts)))
        for i, p in enumerate(parts):
            wait_idle(p, timeout=120)
            # the preset's ranks (the sliders are drawn once the step's page has run: under load, after the address)
            wait_until(lambda: ranks(p) == ["1", "64"], f"participant {i}: the preset's ranks (shows {ranks(p)})", 60)
            assert not page_errors(p), page_errors(p)
        for p, a in zip(parts, ("150k", "147456", "1e6")):
            answer(p, a)
        answer(parts[2], "<script>alert(1)</script>")  # hostile: refused with one line, the earlier answer kept
        wait_until(lambda: banner(parts[2]).get_by_text("Refused: type a number").count() == 1, "a refusal", 30)
        assert banner_says(parts[2], "Your answer: 1,000,000")
        wait_until(lambda: metric(teacher, "answers") == "3", "three answers on the projector", 30)
        wait_idle(teacher)
        assert teacher.locator('[data-testid="stPlotlyChart"]').count() >= 1  # the room's answers drawn
        shot(teacher, "lesson_projector_answers")
        shot(parts[0], "lesson_participant_banner")
        click_key(teacher, "lesson_reveal")
        panel = teacher.locator(".st-key-lesson-question")  # the projector's question panel (not the banner)
        wait_until(lambda: panel.get_by_text("Revealed:").count() > 0, "the reveal on the projector", 120)
        revealed = panel.locator('[data-testid="stAlert"]').filter(has_text="Revealed:").first.inner_text()
        assert "147,456" in revealed and "2 of 3 answered it (within 10 %)" in revealed, revealed
        wait_until(lambda: banner_says(parts[0], "Revealed: 147,456"), "the participant sees the truth", 30)
        wait_idle(teacher)
        shot(teacher, "lesson_projector_revealed")
        no_axe_problem(teacher, "the teacher's Lesson page (projector)")
        assert banner(teacher).count() == 0  # the teacher's page shows the step itself
        no_axe_problem(parts[0], "a participant's banner (light)")
        no_axe_problem(parts[2], "a participant's banner (projector)")

        # ---------------------------------------------------------------- one stops following and stays
        stay = parts[1]
        stay.locator(".st-key-lesson-banner").get_by_text("Follow the teacher").click()
        wait_idle(stay)
        kept = href(stay)
        move(2, [(0, parts[0]), (2, parts[2])])
        wait_until(lambda: banner_says(stay, "Step 3 of 5"), "the banner of a page that does not follow")
        assert href(stay) == kept and page_shows(stay, 1)  # it stayed on step 2's view
        for p in (parts[0], parts[2]):
            wait_idle(p, timeout=120)
            assert ranks(p) == ["16"], ranks(p)
        move(3, [(0, parts[0]), (2, parts[2])], by_keyboard=True)
        assert href(stay) == kept
        wait_until(lambda: banner_says(stay, "Step 4 of 5"), "the banner of a page that does not follow")
        wait_idle(stay)
        stay.get_by_role("button", name="Back to the lesson").click()
        wait_until(lambda: page_shows(stay, 3) and banner_says(stay, "Step 4 of 5"), "back to the lesson")

        # ---------------------------------------------------------------- the teacher's Lesson page in light mode
        t2ctx, t2 = open_ctx(browser, f"{room_server}/Lesson", height=2000)
        ctxs.append(t2ctx)
        t2.locator('input[aria-label="Instructor token"]').fill(TOKEN)
        click_key(t2, "lesson_unlock")
        t2.locator(".st-key-lesson_next").wait_for(timeout=30_000)
        wait_idle(t2)
        no_axe_problem(t2, "the teacher's Lesson page (light)")
        assert not page_errors(t2), page_errors(t2)
        shot(t2, "lesson_teacher")

        # ---------------------------------------------------------------- the end, and the take-home
        teacher.get_by_text("Yes, end it").click()
        wait_idle(teacher)
        click_key(teacher, "lesson_end")
        wait_until(lambda: teacher.get_by_text("No lesson is running").count() > 0, "the lesson ended")
        home = parts[0]  # the same session (a sidebar link, not a reload): its answers are its own
        home.locator('[data-testid="stSidebar"] [data-testid="stPageLink"]').filter(has_text="Lesson").first.click()
        home.locator(".st-key-lesson_th_html").wait_for(timeout=60_000)
        wait_idle(home)
        with home.expect_download(timeout=60_000) as dl:
            click_key(home, "lesson_th_html")
        path = ARTIFACTS / "lesson_takehome.html"
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        dl.value.save_as(str(path))
        html = path.read_text("utf-8")
        assert "What LoRA trains" in html and "147,456" in html and "Your answer:</b> 150,000" in html
        reader = home.context.new_page()
        reader.goto(path.as_uri())
        links = [a.get_attribute("href") for a in reader.locator("a.step-link").all()]
        assert len(links) == len(LESSON.steps)
        reader.pdf(path=str(ARTIFACTS / "lesson_takehome.pdf"), format="A4")
        for k, link in enumerate(links):  # each link, on this server, opens its step's view
            u = urlsplit(link)
            reader.goto(f"{room_server}{u.path}?{u.query}", wait_until="domcontentloaded")
            reader.wait_for_selector('[data-testid="stSidebar"]', timeout=90_000)
            wait_idle(reader, timeout=120)
            assert page_shows(reader, k), (k, href(reader))
            assert not page_errors(reader), page_errors(reader)
    finally:
        for c in ctxs:
            c.close()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "room_walk.json").write_text(json.dumps(times, indent=1))
