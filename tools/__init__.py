"""Developer tools that are not measurements, shared by tests, benchmarks and workshops (never importing tests/):
starting the real server (``streamlit_server``), several behind nginx (``serve_room``), a headless participant
(``st_protocol``) and the load tests' rooms (``load_participant``, ``lesson_room``), a page in chromium
(``browser_page``), py-spy sorting (``pyspy_shares``), the mutation tool (``mutation``) and the GPU check
(``gpu_check``)."""
