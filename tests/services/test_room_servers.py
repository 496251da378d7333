"""A bigger room: two real dashboard servers behind nginx (``tools/serve_room.py``), sharing one class board.

The servers are started with ``tools.streamlit_server.serve`` and nginx on a free port with its configuration in a
temporary folder (``tools.serve_room.room``); all of them are stopped after the module.  The participants are
headless (``tools/st_protocol.py``) and carry the proxy's cookie as a browser does, with the page's ``Origin``.
nginx is not installed by the test: ``make test`` installs Debian's package (``make nginx``); without it the
module is skipped with that reason.
"""

from __future__ import annotations

import asyncio
import http.cookies
import json
import urllib.request

import pytest

from tools.st_protocol import Session
from tools.serve_room import COOKIE, HEADER, nginx_binary, nginx_config, room

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    nginx_binary() is None, reason="nginx is absent (install it with `make nginx`: Debian's nginx package)")]


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("room")
    # runs in worker processes, as a real server (the suite runs them in threads); Home shows each server's pid
    env = {"PEFT_EXPLORER_BOARD": tmp / "board.sqlite", "PEFT_EXPLORER_DEBUG": "1",
           "PEFT_EXPLORER_EXECUTOR": "process"}
    with room(2, env=env, sessions=tmp / "sessions", runs=2) as r:
        yield r


def get(url: str, cookie: str | None = None) -> tuple[str | None, str | None]:
    """(the server that answered, the cookie the proxy set) for one page request through the proxy."""
    req = urllib.request.Request(url + "/", headers={"Cookie": f"{COOKIE}={cookie}"} if cookie else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
        jar = http.cookies.SimpleCookie(r.headers.get("Set-Cookie") or "")
        return r.headers.get(HEADER), jar[COOKIE].value if COOKIE in jar else None


def participant(r, pinned: str) -> Session:
    """A headless tab of a browser the proxy pinned to server ``pinned`` ("s1", "s2")."""
    return Session(r.url, headers={"Cookie": f"{COOKIE}={pinned}", "Origin": r.url})


async def server_pid(r, pinned: str) -> int:
    s = participant(r, pinned)
    try:
        await s.open("", "")
        assert await s.wait_for(lambda x: any('"base_models"' in e.text for e in x.all("code")), 120), s.texts()[:20]
        return json.loads(next(e.text for e in s.all("code") if '"base_models"' in e.text))["pid"]
    finally:
        await s.close()


def test_the_configuration_passes_websockets_and_pins_by_cookie(tmp_path):
    conf = nginx_config(["127.0.0.1:9001", "127.0.0.1:9002"], 8501, tmp_path)
    for line in ("proxy_http_version 1.1;", "proxy_set_header Upgrade $http_upgrade;",
                 "proxy_set_header Connection $connection_upgrade;", "proxy_set_header Host $http_host;",
                 "proxy_read_timeout 1d;", "least_conn;", "server 127.0.0.1:9002 backup;"):
        assert line in conf
    assert "ip_hash;" in nginx_config(["127.0.0.1:9001"], 8501, tmp_path, sticky="ip")
    with pytest.raises(ValueError):
        nginx_config(["127.0.0.1:9001"], 8501, tmp_path, sticky="random")


def test_a_newcomer_is_pinned_to_one_server_and_its_websocket_follows(two):
    seen = {}
    for _ in range(6):  # newcomers spread over the servers; each gets a cookie naming the one that answered
        answered, cookie = get(two.url)
        assert cookie == answered and cookie in ("s1", "s2")
        seen[cookie] = seen.get(cookie, 0) + 1
    assert set(seen) == {"s1", "s2"}, seen
    for name in ("s1", "s2"):  # a pinned browser stays where it is (no new cookie)
        assert {get(two.url, name) for _ in range(4)} == {(name, None)}
    assert get(two.url, "no-such-server")[1] in ("s1", "s2")  # a stale cookie is replaced
    # the page's WebSocket goes through the proxy (upgrade, Host and Origin) to the pinned server's process
    pids = [asyncio.run(server_pid(two, n)) for n in ("s1", "s2")]
    assert pids == [s.proc.pid for s in two.servers]


async def share_on_one_see_on_the_other(r) -> tuple[Session, Session]:
    board = participant(r, "s2")
    await board.open("Class_board", "")
    assert await board.wait_for(lambda s: s.has_text("Nothing shared yet") and not s.script_running, 120), \
        board.texts()[:20]
    ft = participant(r, "s1")
    await ft.open("Fine_tune", "model=tiny-bert&method=lora&steps=4&bs=8&seed=3")
    await ft.wait_idle(120)
    await ft.click("ft_start")
    assert await ft.wait_for(lambda s: s.has_text(r"Finished \d+ steps"), 180), ft.texts()[-8:]
    assert await ft.wait_for(lambda s: _has_widget(s, "ft_board_share") and not s.script_running, 60), ft.texts()[-8:]
    await ft.set_text("ft_board_name", "Ada")
    await ft.wait_idle(60)
    await ft.click("ft_board_share")
    assert await ft.wait_for(lambda s: s.has_text("is on the class board|Shared") and not s.script_running, 60), \
        ft.texts()[-8:]
    # the other server's board page redraws by itself (it polls the board file's version)
    # (until the whole row of metrics has arrived: the first one comes before the last, whose help names the sharer)
    await board.wait_for(lambda s: s.metric("shared runs") == "1" and s.metric("best accuracy") is not None
                         and not s.script_running, 60)
    return ft, board


def _has_widget(s: Session, key: str) -> bool:
    try:
        s.widget(key)
        return True
    except KeyError:
        return False


def test_a_share_made_on_one_server_appears_on_the_other_servers_board(two):
    async def go():
        ft, board = await share_on_one_see_on_the_other(two)
        try:
            return ft, board, board.metric("shared runs"), [e.proto.help for e in board.all("metric")]
        finally:
            await ft.close()
            await board.close()

    ft, board, shown, helps = asyncio.run(go())
    assert not ft.errors and not board.errors, (ft.errors, board.errors)
    assert shown == "1", board.texts()[:30]
    assert any("Ada" in h for h in helps), helps  # the sharer's name, as typed on the other server
