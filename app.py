"""PEFT Explorer: the router.  One ``st.Page`` per entry of ``explorer.views.pages.PAGES`` (title, icon and
address written once there), the shared chrome (``ui.frame.chrome``), then the page itself."""

import streamlit as st

from explorer.views.pages import PAGES
from ui import frame

_pages = [st.Page(p.file, title=p.title, icon=p.icon, url_path=p.url_path or None, default=p.key == "home")
          for p in PAGES]
current = st.navigation(_pages, position="hidden")
frame.chrome(next(p for p in PAGES if p.title == current.title))
current.run()
