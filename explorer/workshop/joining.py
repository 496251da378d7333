"""Joining the room: the address participants open, and its QR code (pure Python, no streamlit).

    info = join_url(host="localhost:8501")   # JoinInfo(url, source, warning)
    qr_svg(info.url), qr_png(info.url)       # bytes, made by segno (no network, no image library)

The address comes from ``PEFT_EXPLORER_PUBLIC_URL`` when the operator set it (e.g. ``http://10.0.0.5:8501`` or a
proxy's ``https://peft.example.org/workshop``), checked (http or https, a host, no user name or password, no
query); otherwise from the server's own address as the browser reached it (the ``Host`` header): when that is
this machine only (localhost, 127.0.0.1, ::1, 0.0.0.0), the machine's address on its network is put in its place
(found by asking the operating system which local address would route outwards; no packet is sent), with a
warning that says how to set the address for certain.  Opening the root of the address lands a participant in the
current step (the router follows the room).
"""

from __future__ import annotations

import io
import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

__all__ = ["JoinInfo", "join_url", "qr_svg", "qr_png", "qr_inline_svg", "PUBLIC_URL_ENV", "check_public_url"]

PUBLIC_URL_ENV = "PEFT_EXPLORER_PUBLIC_URL"
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "")


@dataclass(frozen=True)
class JoinInfo:
    url: str
    source: str  # "setting" (PEFT_EXPLORER_PUBLIC_URL), "server" (the address the browser used), "network"
    warning: str = ""  # one line when participants may not reach it


def check_public_url(url: str) -> str:
    """The address participants open, cleaned (no trailing slash, no query); ValueError with one line."""
    s = str(url or "").strip()
    if not s or len(s) > 300 or any(ord(ch) < 33 for ch in s):
        raise ValueError(f"{PUBLIC_URL_ENV} must be an address such as http://10.0.0.5:8501, without spaces")
    p = urlsplit(s)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError(f"{PUBLIC_URL_ENV} must start with http:// or https:// and name a host")
    if p.username or p.password:
        raise ValueError(f"{PUBLIC_URL_ENV} must not hold a user name or password")
    if p.query or p.fragment:
        raise ValueError(f"{PUBLIC_URL_ENV} must not hold a query (?...) or a fragment (#...)")
    try:
        p.port
    except ValueError:
        raise ValueError(f"{PUBLIC_URL_ENV} has an invalid port") from None
    return urlunsplit((p.scheme, p.netloc, p.path.rstrip("/"), "", ""))


def _lan_address() -> str | None:
    """This machine's address on its network (the local end a UDP socket would use outwards; nothing is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ipaddress.ip_address(ip).is_loopback or ip == "0.0.0.0" else ip


def join_url(host: str | None = None, scheme: str = "http", environ=None, lan=_lan_address) -> JoinInfo:
    """The address participants should open.  ``host``: the ``Host`` header of the request (``name:port``)."""
    environ = os.environ if environ is None else environ
    public = environ.get(PUBLIC_URL_ENV, "")
    problem = ""
    if public.strip():
        try:
            return JoinInfo(check_public_url(public), "setting")
        except ValueError as e:
            problem = f"{e}; "
    scheme = scheme if scheme in ("http", "https") else "http"
    p = urlsplit(f"//{host or 'localhost:8501'}")
    try:
        name, port = (p.hostname or "").lower(), p.port
    except ValueError:
        name, port = "localhost", None
    netloc = lambda h: (f"[{h}]" if ":" in h else h) + (f":{port}" if port else "")  # noqa: E731
    if name not in LOCAL_HOSTS:
        return JoinInfo(f"{scheme}://{netloc(name)}", "server", problem.rstrip("; "))
    ip = lan()
    if ip:
        return JoinInfo(f"{scheme}://{netloc(ip)}", "network",
                        f"{problem}guessed from this machine's network address; set {PUBLIC_URL_ENV} to be sure")
    return JoinInfo(f"{scheme}://{netloc(name or 'localhost')}", "server",
                    f"{problem}this address only works on this machine: start the server with --server.address "
                    f"0.0.0.0 and set {PUBLIC_URL_ENV} to the address the room can reach")


def _qr(url: str):
    import segno

    return segno.make(url, error="m", micro=False)


def qr_svg(url: str, scale: int = 8, dark: str = "#000000", light: str = "#ffffff", omitsize: bool = False) -> bytes:
    """A QR code of ``url`` as a standalone SVG document (bytes); ``omitsize``: a viewBox instead of a fixed
    width and height, so CSS can size it."""
    buf = io.BytesIO()
    _qr(url).save(buf, kind="svg", scale=scale, dark=dark, light=light, border=2, omitsize=omitsize)
    return buf.getvalue()


def qr_png(url: str, scale: int = 8) -> bytes:
    """A QR code of ``url`` as PNG bytes (segno writes PNG itself)."""
    buf = io.BytesIO()
    _qr(url).save(buf, kind="png", scale=scale, border=2)
    return buf.getvalue()


def qr_inline_svg(url: str, scale: int = 3) -> str:
    """The SVG without its XML declaration, to place inside an HTML page."""
    svg = qr_svg(url, scale=scale, omitsize=True).decode("utf-8")
    return svg[svg.index("<svg"):]
