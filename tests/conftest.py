import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# runs execute in the test's own process (fast, inspectable); the worker-process executor, the dashboard's
# default, is tested by test_workers.py, test_browser_workers.py, test_browser_lessons.py, test_browser_presets.py
# and the load test
os.environ.setdefault("PEFT_EXPLORER_EXECUTOR", "thread")
# the server freezes its long-lived objects out of the garbage collector's walks (explorer.workshop.status.
# freeze_long_lived); the test process runs pages in AppTest and checks that dropped objects are collected: not here
os.environ.setdefault("PEFT_EXPLORER_GC_FREEZE", "0")
# the class board (and the lesson room beside it) and the session folders of the tests live in a temporary folder of
# their own, never in the user's cache folder; under pytest-xdist (make test runs two workers) each worker makes its
# own, so one worker's shares, lessons and janitor never meet another's.  Set by the user, they are kept.
if os.environ.get("_PEFTX_TEST_FOLDERS_OF") not in (None, str(os.getpid())) or "PEFT_EXPLORER_BOARD" not in os.environ:
    import tempfile

    _own = tempfile.mkdtemp(prefix="peftx-test-")
    os.environ["PEFT_EXPLORER_BOARD"] = os.path.join(_own, "board.sqlite")
    os.environ["PEFT_EXPLORER_SESSIONS"] = os.path.join(_own, "sessions")
    os.environ["_PEFTX_TEST_FOLDERS_OF"] = str(os.getpid())

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402
from streamlit.runtime.pages_manager import PagesManager  # noqa: E402

_pages_manager_init = PagesManager.__init__


def _router_only(self, *args, **kwargs):
    """AppTest runs ``app.py`` as the server does once the router has run: Streamlit's legacy ``pages/``-folder mode
    (which runs a page file without the router) is what ``st.navigation`` switches off, but AppTest switches it on
    again before every run.  The server's own first request is handled by ``ui.frame`` (tested with a real server
    in tests/services/test_router.py)."""
    _pages_manager_init(self, *args, **kwargs)
    PagesManager.uses_pages_directory = False


PagesManager.__init__ = _router_only

# 2 intra-op threads, or this process's share of the cores when pytest-xdist runs several workers side by side
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))
# pytest-xdist (make test runs 2 workers, --dist loadgroup): each test file runs whole in one worker, so a module's
# server, browser or model is made once; the tests whose waits are bound to a room's follow times (the room walk
# and the load layer) form one group, so two rooms never train beside each other on a small machine
_TIMING_BOUND = {"tests/browser/test_browser_room.py", "tests/load/test_load.py", "tests/load/test_load_lesson.py"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = Path(str(item.fspath)).resolve()
        rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.as_posix()
        # a group's name ends the node id (``...::test@name``): no "/", which pytest reads as a folder of the id
        item.add_marker(pytest.mark.xdist_group("timing-bound" if rel in _TIMING_BOUND else
                                                 rel.removesuffix(".py").replace("/", ".")))


@pytest.fixture(scope="session")
def tiny_bert():
    from explorer.models import load_model

    return load_model("tiny-bert")


@pytest.fixture(scope="session")
def tiny_llama():
    from explorer.models import load_model

    return load_model("tiny-llama")


@pytest.fixture(scope="module")
def one_thread():
    """Runs in worker threads share 2 busy cores: 1 intra-op thread each (as the server's queue sets it).  A test
    module uses it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
