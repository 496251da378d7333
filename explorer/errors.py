"""Errors that carry a message meant for the user (shown as one line, never a traceback).

The bottom layer: this module imports nothing of the project, so every layer can raise these.
"""

from __future__ import annotations


class KnobError(ValueError):
    """Impossible knob values; the message names the knob and the allowed range."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what to do, in one line."""


class DataError(ValueError):
    """A data file or data set is unusable; the message names the problem."""


class ServiceError(RuntimeError):
    """A run service (worker process, Ray) refused or ended a run; the message is one line for the user."""


class WorkerDied(ServiceError):
    """The worker process running a run ended without a result."""


def died_message(exitcode: int | None) -> str:
    """One line for a worker that ended without a result (``exitcode`` as multiprocessing reports it)."""
    if exitcode is not None and exitcode < 0:
        import signal

        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        why = " (out of memory, or killed by the operator)" if -exitcode == signal.SIGKILL else ""
        how = f"was killed by {name}{why}"
    else:
        how = f"exited with code {exitcode}"
    return (f"worker died: the process running this run {how}; the server, the other runs and your history "
            "are unaffected")


UserError = (KnobError, ModelLoadError, DataError, FileNotFoundError, FloatingPointError, ServiceError)


def user_message(exc: BaseException) -> str:
    """A one-line message for any exception (for pages and the command line)."""
    if isinstance(exc, UserError):
        return str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower():
        return "Out of memory: pick a smaller model, batch or sequence length."
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{exc.__class__.__name__}: {first[:300]}"
