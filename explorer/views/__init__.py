"""Pure figure and page-state helpers (no Streamlit)."""
