"""The router (``app.py``, ``st.navigation``) on the real server: every page's old address opens that page with the
shared chrome, the first request of a fresh server included (Streamlit's legacy ``pages/``-folder mode would run
that first page without the router: ``ui.frame`` reroutes it), and an unknown address falls back to Home."""

from __future__ import annotations

import asyncio

import pytest

from explorer.views.pages import PAGES
from tools.st_protocol import Session
from tools.streamlit_server import serve


def sidebar_links(s: Session) -> list[str]:
    return [e.proto.label for path, e in sorted(s.elements.items()) if e.kind == "page_link" and path[0] == 1]


async def visit(url: str, page: str, query: str = "") -> Session:
    s = Session(url)
    await s.open(page, query)
    await s.wait_for(lambda x: x.runs_finished >= 1 and not x.script_running, timeout=120)
    await s.close()
    return s


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(env={"PEFT_EXPLORER_SESSIONS": tmp_path_factory.mktemp("sessions")}) as srv:
        yield srv.url


def titles(s: Session) -> list[str]:
    return [e.text for e in s.all("heading")]


def test_a_fresh_servers_first_request_goes_through_the_router(server):
    # the very first run of this server asks for Fine-tune by its old address (no Home first)
    s = asyncio.run(visit(server, "Fine_tune", "model=tiny-bert&method=lora&steps=4"))
    assert not s.errors, s.errors
    assert "Fine-tune" in titles(s)
    assert sidebar_links(s) == [p.title for p in PAGES]  # the router's chrome: every page, in the registry's order
    assert s.widget("instructor") and s.widget("projector")
    assert "method=lora" in s.query and "steps=4" in s.query  # the page wrote its settings back


@pytest.mark.parametrize("page", [p for p in PAGES if p.key not in ("home", "finetune")], ids=lambda p: p.key)
def test_every_old_address_opens_its_page_with_the_chrome(server, page):
    s = asyncio.run(visit(server, page.url_path, "model=tiny-bert"))
    assert not s.errors, s.errors
    assert page.title in titles(s) or page.title.replace("Compare", "Compare runs") in titles(s), titles(s)
    assert sidebar_links(s) == [p.title for p in PAGES]


def test_home_and_an_unknown_address(server):
    home = asyncio.run(visit(server, "", ""))
    assert "PEFT Explorer" in titles(home) and sidebar_links(home) == [p.title for p in PAGES]
    lost = asyncio.run(visit(server, "No_such_page", ""))
    assert "PEFT Explorer" in titles(lost)  # st.navigation falls back to the default page, Home
