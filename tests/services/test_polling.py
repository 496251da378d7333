"""Waiting pages poll at the pace of what they watch, and change pace without a full-page run (``ui.polling``).

The real server (``tools.streamlit_server.serve``, runs in its threads, one run at a time) and headless tabs
(``tools/st_protocol.py``, which keep the fragments' timers as the browser does): one tab keeps the server's only
run slot busy with a long fine-tune, another waits in line behind it on Fine-tune, Compare's budget sweep or the
SMT inspector's warm-up.  While it waits its panel polls every 2 s; when the slot frees, the panel speeds up by
itself (Fine-tune 0.7 s, the sweep 1 s, the warm-up 0.5 s) with no full run of the page in between.  The Claims
lab's live re-run (minilm, minutes) is checked in the core: ``tests/core/test_redraw_cost.py``.
"""

from __future__ import annotations

import asyncio

import pytest

from tools.st_protocol import Session
from tools.streamlit_server import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("polling")
    # a cache folder of its own: a warm-up another test left in the shared cache would be ready at once, and the
    # SMT tab would never wait for it
    with serve(env={"PEFT_EXPLORER_EXECUTOR": "thread", "PEFT_EXPLORER_MAX_RUNS": "1",
                    "PEFT_EXPLORER_SESSIONS": tmp / "sessions", "PEFT_EXPLORER_BOARD": tmp / "board.sqlite",
                    "PEFT_EXPLORER_CACHE": tmp / "cache"}) as srv:
        yield srv.url


async def busy_slot(url: str) -> Session:
    """A tab whose long fine-tune holds the server's only run slot until Stop frees it (minilm: 500 of its steps
    outlast every wait here on a fast machine; tiny-bert's were over within seconds on a quiet one)."""
    s = Session(url)
    await s.open("Fine_tune", "model=minilm&method=lora&steps=500&bs=16&seed=1")
    await s.wait_idle(120)
    await s.click("ft_start")
    assert await s.wait_for(lambda x: x.has_text(r"step [1-9]\d* of 500"), 120), s.texts()[-6:]
    return s


def since(s: Session, n: int) -> list:
    """The tab's full runs and fragment paces after its n-th event."""
    return [e[0] if e[0] == "full run" else (e[0], e[-1]) for e in s.events[n:]]


async def wait_then_free(url: str, waiter: Session, queued, fast: float) -> tuple[set, list, bool]:
    """With the slot busy, ``queued(waiter)`` puts something in line; returns the waiter's paces while it waits,
    and what reached it from the moment the slot was freed until its panel polled at ``fast`` s."""
    holder = await busy_slot(url)
    freed = False
    try:
        await queued(waiter)
        assert await waiter.wait_for(lambda x: x.has_text("in line") and not x.script_running, 60), waiter.texts()[-8:]
        await asyncio.sleep(2.5)  # a poll or two in line
        waiting = set(waiter.paces().values())
        n = len(waiter.events)
        assert await holder.wait_for(lambda x: has_widget(x, "ft_stop") and not x.script_running, 15), \
            "the run holding the slot ended before the waiter was measured"
        await holder.click("ft_stop")
        freed = True
        sped_up = await waiter.wait_for(lambda x: ("pace", fast) in since(x, n), 90)
        return waiting, since(waiter, n), sped_up
    finally:
        if not freed:  # (a stopped run's page has no Stop button: pressing it again would wait 15 s for nothing)
            await press(holder, "ft_stop")
        await holder.close()


async def press(s: Session, key: str) -> None:
    """Press a Stop button once the page shows it (a rerun may be drawing the page); nothing when it does not."""
    if await s.wait_for(lambda x: has_widget(x, key) and not x.script_running, 15):
        await s.click(key)
        await s.wait_idle(60)


def has_widget(s: Session, key: str) -> bool:
    try:
        s.widget(key)
        return True
    except KeyError:
        return False


def before_fast(events: list, fast: float) -> list:
    return events[:events.index(("pace", fast))] if ("pace", fast) in events else events


def test_fine_tune_polls_a_queued_run_slowly_and_speeds_up_when_it_starts_without_a_full_run(server):
    async def go():
        ft = Session(server)
        await ft.open("Fine_tune", "model=tiny-bert&method=lora&steps=300&bs=8&seed=2")
        await ft.wait_idle(120)
        try:
            return await wait_then_free(server, ft, lambda s: s.click("ft_start"), 0.7), ft.errors
        finally:
            await press(ft, "ft_stop")
            await ft.close()

    (waiting, events, sped_up), errors = asyncio.run(go())
    assert not errors, errors
    assert waiting == {2.0}, waiting
    assert sped_up, events
    assert "full run" not in before_fast(events, 0.7), events  # before: the whole page ran to change the pace


def test_compares_sweep_panel_waits_at_2_s_and_polls_each_second_once_its_run_trains(server):
    async def go():
        cmp = Session(server)
        await cmp.open("Compare", "sw_model=tiny-bert&sw_steps=200&sw_methods=lora&sw_ranks=1,2")
        await cmp.wait_idle(120)
        try:
            return await wait_then_free(server, cmp, lambda s: s.click("cmp_sweep_go"), 1.0), cmp.errors
        finally:
            await press(cmp, "cmp_sweep_stop")
            await cmp.close()

    (waiting, events, sped_up), errors = asyncio.run(go())
    assert not errors, errors
    assert waiting == {2.0}, waiting  # before: every second while its run waited in line
    assert sped_up, events
    assert "full run" not in before_fast(events, 1.0), events


def test_the_smt_warm_up_waits_at_2_s_and_reports_its_steps_every_half_second(server):
    async def go():
        smt = Session(server)
        # minilm: a warm-up that lasts some seconds (a tiny model's is over between two polls)
        await smt.open("SMT_block_inspector", "model=minilm&ws=60&bs=8&len=64")
        await smt.wait_idle(120)
        try:
            out = await wait_then_free(server, smt, lambda s: s.click("smt_compute"), 0.5)
            return out, smt.errors
        finally:
            await press(smt, "smt_stop")
            await smt.close()

    (waiting, events, sped_up), errors = asyncio.run(go())
    assert not errors, errors
    assert waiting == {2.0}, waiting  # before: every half second while it waited in line
    assert sped_up, events
    assert "full run" not in before_fast(events, 0.5), events
