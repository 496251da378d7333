import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# runs execute in the test's own process (fast, inspectable); the worker-process executor, the dashboard's
# default, is tested by test_workers.py, test_browser_workers.py, test_browser_lessons.py and the load test
os.environ.setdefault("PEFT_EXPLORER_EXECUTOR", "thread")
# the server freezes its long-lived objects out of the garbage collector's walks (explorer.workshop.status.
# freeze_long_lived); the test process runs pages in AppTest and checks that dropped objects are collected: not here
os.environ.setdefault("PEFT_EXPLORER_GC_FREEZE", "0")
# the class board of the tests lives in a temporary file, never in the user's cache folder
if "PEFT_EXPLORER_BOARD" not in os.environ:
    import tempfile

    os.environ["PEFT_EXPLORER_BOARD"] = os.path.join(tempfile.mkdtemp(prefix="peftx-board-"), "board.sqlite")

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

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
