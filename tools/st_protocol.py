"""A headless Streamlit participant: the browser's side of Streamlit's WebSocket protocol, without a browser.

The load test uses it to stand in for a room's laptops.  In a workshop each participant's browser draws the pages
on its own machine; on the test machine ten Chromium renderers would share the server's two cores (measured:
they used 113 of the 146 CPU-seconds of a load-test pass, the server 15), so the redraw times would measure the
browsers queueing for the CPU, not the server.  This client does what the browser's Streamlit frontend does on
the wire, and nothing else:

* opens ``/_stcore/stream`` (subprotocol ``streamlit``) and asks for a page by name with a query string;
* keeps the elements the server sends (``delta`` messages, by their delta path) and drops the ones a full run
  did not send again, as the frontend does;
* follows ``page_info_changed`` (the URL's query string, e.g. the ``sid`` the app writes) and ``navigation``
  (the page's script hash, sent back on every rerun, and its address; a page switched by the server, as
  ``st.switch_page`` does, drops the old page's fragment timers as the frontend does);
* moves a widget by sending a rerun with that widget's new state (the server keeps the others' values);
  presses a button with a trigger value;
* runs ``st.fragment(run_every=…)`` timers as the frontend does: an ``auto_rerun`` message starts one (or replaces
  the fragment's timer), sending a fragment rerun every interval; ``stop_auto_rerun`` and a new full run (asked
  for by the client, or started by the server: a ``new_session`` without fragment ids) end them.  ``events`` keeps
  what happened, in order: ("full run",) when a full run starts, ("pace", fragment id, seconds), ("stop", ids).

What it does not do: draw anything, run components, upload files, or keep the ForwardMsg cache (it reports no
cached hashes, so the server sends every message whole).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

FINISHED = {ForwardMsg.FINISHED_SUCCESSFULLY, ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY}
TEXT_FIELDS = {"markdown": "body", "alert": "body", "text": "body", "heading": "body", "code": "code_text",
               "exception": "message", "toast": "body"}


@dataclass
class Element:
    kind: str
    proto: object  # the element's own message (Slider, Metric, Markdown, ...)

    @property
    def text(self) -> str:
        if self.kind == "metric":
            return f"{self.proto.label} {self.proto.body}"
        if self.kind == "progress":
            return self.proto.text
        f = TEXT_FIELDS.get(self.kind)
        return getattr(self.proto, f, "") if f else getattr(self.proto, "label", "")

    @property
    def widget_id(self) -> str:
        return getattr(self.proto, "id", "") or ""


@dataclass
class Session:
    """One participant's page session (one WebSocket), driven from an asyncio task."""
    base: str  # http://127.0.0.1:PORT
    elements: dict = field(default_factory=dict)  # delta path -> Element
    query: str = ""
    page_name: str = ""
    page_hash: str = ""
    page_path: str = ""  # the address of the page the server drew last ("" for the default page)
    runs_finished: int = 0
    script_running: bool = False
    errors: list = field(default_factory=list)
    # sent with the WebSocket's opening request, as a browser sends them: e.g. {"Cookie": "peftx_server=s1"} (the
    # proxy of tools/serve_room.py pins a browser to a server by that cookie) and Origin (the page's own address)
    headers: dict = field(default_factory=dict)
    events: list = field(default_factory=list)

    def __post_init__(self):
        self._ws = None
        self._reader = None
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}  # fragment id -> (seconds, its timer)
        self._touched: set = set()
        self._changed = asyncio.Event()

    # ------------------------------------------------------------------ connection

    async def open(self, page: str, query: str = "") -> None:
        url = self.base.replace("http://", "ws://") + "/_stcore/stream"
        headers = {k: v for k, v in self.headers.items() if k.lower() != "origin"}
        origin = next((v for k, v in self.headers.items() if k.lower() == "origin"), None)
        self._ws = await websockets.connect(url, subprotocols=["streamlit"], max_size=None, open_timeout=60,
                                            ping_interval=None, additional_headers=headers or None, origin=origin)
        self._reader = asyncio.create_task(self._read())
        await self.goto(page, query)

    async def close(self) -> None:
        self._drop_timers()
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()

    async def goto(self, page: str, query: str = "") -> None:
        """What following a sidebar link with that query string does: a full run of another page."""
        self.page_name, self.page_hash, self.query = page, "", query
        self.elements.clear()
        await self._rerun()

    # ------------------------------------------------------------------ what the page shows

    def all(self, kind: str | None = None) -> list[Element]:
        return [e for _, e in sorted(self.elements.items()) if kind is None or e.kind == kind]

    def paces(self) -> dict:
        """{fragment id: seconds} of the fragments' timers running now."""
        return {fid: iv for fid, (iv, _) in self._timers.items()}

    def texts(self) -> list[str]:
        return [e.text for e in self.all()]

    def has_text(self, pattern) -> bool:
        import re
        return any(re.search(pattern, t) for t in self.texts())

    def metric(self, label: str) -> str | None:
        for e in self.all("metric"):
            if e.proto.label == label:
                return e.proto.body
        return None

    def widget(self, key: str) -> Element:
        """A widget by its user key (the part after the hash in Streamlit's id) or its label."""
        for e in self.all():
            wid = e.widget_id
            if wid and (wid.endswith("-" + key) or getattr(e.proto, "label", None) == key):
                return e
        raise KeyError(f"no widget {key!r} on {self.page_name} (widgets: "
                       f"{[e.widget_id.rsplit('-', 1)[-1] for e in self.all() if e.widget_id]})")

    # ------------------------------------------------------------------ acting

    async def set_slider(self, key: str, value) -> None:
        """Move a slider: st.slider sends the number; st.select_slider the option as it is shown (Streamlit
        1.5x+ sends select_slider values as their formatted strings)."""
        el = self.widget(key)
        opts = list(el.proto.options)
        if opts:
            shown = str(value)
            if shown not in opts:
                raise ValueError(f"{key}: {shown!r} is not one of the slider's options {opts}")
            await self._rerun(lambda ws: ws.string_array_value.data.append(shown), el.widget_id)
        else:
            await self._rerun(lambda ws: ws.double_array_value.data.append(float(value)), el.widget_id)

    async def set_text(self, key: str, value: str) -> None:
        """Type into a text field (st.text_input / st.text_area): its new value, as the browser sends it."""
        el = self.widget(key)
        await self._rerun(lambda ws: setattr(ws, "string_value", str(value)), el.widget_id)

    async def rerun(self) -> None:
        """What pressing R in the browser does: the page runs again with the widgets as they are."""
        await self._rerun()

    async def click(self, key: str) -> None:
        el = self.widget(key)
        await self._rerun(lambda ws: setattr(ws, "trigger_value", True), el.widget_id)

    async def wait_for(self, predicate, timeout: float = 60.0) -> bool:
        """Until predicate(self) is true (checked after every message); False at the timeout."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
            except asyncio.TimeoutError:
                pass
        return True

    async def wait_idle(self, timeout: float = 90.0) -> None:
        """Until no script run is going on (a full run or a fragment's)."""
        if not await self.wait_for(lambda s: not s.script_running, timeout):
            raise AssertionError(f"{self.page_name}: the script kept running for more than {timeout:.0f} s")

    # ------------------------------------------------------------------ the wire

    async def _rerun(self, set_state=None, widget_id: str = "", fragment_id: str = "", auto: bool = False) -> None:
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string = self.query
        cs.page_script_hash = self.page_hash
        cs.page_name = self.page_name
        if set_state is not None:
            ws = cs.widget_states.widgets.add()
            ws.id = widget_id
            set_state(ws)
        if fragment_id:
            cs.fragment_id = fragment_id
            cs.is_auto_rerun = auto
        else:  # a full run: the frontend drops the fragments' timers; the run sends them again
            self._drop_timers()
            self._touched = set()
        self.script_running = True
        self._changed.set()
        await self._ws.send(msg.SerializeToString())

    def _drop_timers(self) -> None:
        for _, t in self._timers.values():
            t.cancel()
        self._timers.clear()

    async def _tick(self, fragment_id: str, interval: float) -> None:
        try:
            while True:
                await asyncio.sleep(interval)
                await self._rerun(fragment_id=fragment_id, auto=True)
        except (asyncio.CancelledError, websockets.ConnectionClosed):
            pass

    async def _read(self) -> None:
        try:
            async for raw in self._ws:
                fm = ForwardMsg()
                fm.ParseFromString(raw)
                self._handle(fm)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(f"client: {type(e).__name__}: {e}")
            self._changed.set()

    def _handle(self, fm: ForwardMsg) -> None:
        kind = fm.WhichOneof("type")
        if kind == "new_session":
            self.script_running = True
            if not fm.metadata.run.fragment_ids:  # a full run (e.g. st.rerun() on the server): timers end
                self.events.append(("full run",))
                self._drop_timers()
                self._touched = set()
        elif kind == "navigation":  # the page this run is drawing (sent back on the next rerun)
            nav = fm.navigation
            if self.page_hash and nav.page_script_hash != self.page_hash:  # the server switched pages
                for t in self._timers.values():  # (st.switch_page): the old page's fragments are gone
                    t.cancel()
                self._timers.clear()
            self.page_hash = nav.page_script_hash
            self.page_path = next((p.url_pathname for p in nav.app_pages
                                   if p.page_script_hash == nav.page_script_hash), self.page_path)
            self.page_name = self.page_path  # what the frontend asks for on its next rerun
        elif kind == "page_info_changed":
            self.query = fm.page_info_changed.query_string
        elif kind == "delta":
            path = tuple(fm.metadata.delta_path)
            d = fm.delta
            dk = d.WhichOneof("type")
            if dk == "new_element":
                ek = d.new_element.WhichOneof("type")
                self.elements[path] = Element(ek, getattr(d.new_element, ek))
                if ek == "exception":
                    self.errors.append(f"exception on {self.page_name}: {d.new_element.exception.message}")
                self._touched.add(path)
            elif dk == "add_block":
                self._touched.add(path)
        elif kind == "auto_rerun":
            fid, interval = fm.auto_rerun.fragment_id, round(fm.auto_rerun.interval, 3)
            self.events.append(("pace", fid, interval))
            if self._timers.get(fid, (None,))[0] == interval:  # the frontend keeps a timer of the same pace
                return
            old = self._timers.pop(fid, None)
            if old is not None:
                old[1].cancel()
            self._timers[fid] = (interval, asyncio.get_running_loop().create_task(self._tick(fid, interval)))
        elif kind == "stop_auto_rerun":
            self.events.append(("stop", tuple(fm.stop_auto_rerun.fragment_ids)))
            for fid in fm.stop_auto_rerun.fragment_ids:
                t = self._timers.pop(fid, None)
                if t is not None:
                    t[1].cancel()
        elif kind == "script_finished":
            status = fm.script_finished
            if status == ForwardMsg.FINISHED_SUCCESSFULLY:  # a full run: what it did not send is gone
                for p in [p for p in self.elements if p not in self._touched]:
                    del self.elements[p]
            if status in FINISHED:
                self.runs_finished += 1
            if status != ForwardMsg.FINISHED_EARLY_FOR_RERUN:  # else the run that interrupted it goes on
                self.script_running = False
