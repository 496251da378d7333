"""Tasks for short fine-tunes: built-in tasks, local CSV/JSON files and hub data sets.

``from explorer import data`` gives the public API below; the modules hold it by concern:

- :mod:`explorer.data.task`: the ``Task`` object (kinds ``SEQ_CLS`` and ``CAUSAL``).
- :mod:`explorer.data.builtin`: the generated and bundled tasks (``BUILTIN``, ``list_tasks``, defaults).
- :mod:`explorer.data.encodings`: a file's bytes as text (``decode_text``, ``ENCODINGS``, ``binary_reason``).
- :mod:`explorer.data.files`: a user file's columns, stored upload names (``load_file_task``, ``DATA_SUFFIXES``).
- :mod:`explorer.data.rows`: columns -> a Task (column choice, labels, held-out split by distinct text).
- :mod:`explorer.data.load`: ``load_task`` (built-in name, file or hub data set) and ``load_hub_task``.
- :mod:`explorer.data.batches`: ``collate``, ``iter_batches`` and ``evaluate``.
"""

from explorer.data.batches import collate, evaluate, iter_batches
from explorer.data.builtin import BUILTIN, DEFAULT_TASKS, default_task_for, list_tasks
from explorer.data.encodings import ENCODINGS, binary_reason, decode_text, quiet_library_logs
from explorer.data.files import (DATA_SUFFIXES, display_name, is_stored_upload, load_file_task, suffixes_text,
                                 upload_meta)
from explorer.data.load import load_hub_task, load_task
from explorer.data.task import CAUSAL, MIN_ROWS, SEQ_CLS, Task
from explorer.errors import DataError

__all__ = ["Task", "DataError", "SEQ_CLS", "CAUSAL", "MIN_ROWS", "list_tasks", "load_task", "load_file_task",
           "load_hub_task", "default_task_for", "DEFAULT_TASKS", "iter_batches", "evaluate", "collate", "BUILTIN",
           "ENCODINGS", "decode_text", "display_name", "is_stored_upload", "upload_meta", "binary_reason",
           "quiet_library_logs", "DATA_SUFFIXES", "suffixes_text"]
