"""Developer tools that are not measurements: starting the real server for tests and benchmarks
(``streamlit_server``)."""
