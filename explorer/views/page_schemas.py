"""The schema of every page's URL settings, in the core: the pages read their settings through these, and lesson
files are checked against them (``explorer.views.pages.check_settings``).

Pure Python (no streamlit).  Schemas whose fields depend on a value (the playground's methods m1/m2, Fine-tune's
method) are built from the values given; ``SCHEMAS`` maps each page key (``explorer.views.pages``) to its builder.
The class board's page narrows its one setting to the model · task pairs on the board at the time.
"""

from __future__ import annotations

from typing import Callable, Mapping

from explorer.models import REGISTRY, model_names
from explorer.urlstate import Field, Schema, knob_fields

# ----------------------------------------------------------------------------- the schemas


def _playground(values: Mapping) -> Schema:
    from explorer.views import playground as pg

    base = pg.page_schema()
    v, _ = base.parse(values)
    s = base + pg.side_schema(v["m1"], "a")
    return s + pg.side_schema(v["m2"], "b") if v["m2"] != "none" else s


def _task_names() -> tuple:
    from explorer import data as D

    return tuple(t["name"] for t in D.list_tasks())


FT_SOURCES = ("built-in", "upload", "hub")
FT_DEVICES = ("auto", "cpu", "cuda")
SWEEP_MODELS = tuple(model_names())  # the registry's models (explorer.models.REGISTRY)
SWEEP_RANKS = (1, 2, 4, 8, 16, 32)
SMT_MODELS = tuple(model_names())
SMT_INSTANT = tuple(m for m in SMT_MODELS if not REGISTRY[m]["pretrained"])  # random weights: warm up in < 1 s


def finetune_base_schema() -> Schema:
    """Fine-tune's settings but the method's knobs (``finetune_knob_schema``)."""
    from explorer.engine.config import PRECISIONS, TrainConfig
    from explorer.methods import METHODS

    return Schema([
        Field("model", "str", "minilm", max_len=200, help="registry name, local folder or hub id"),
        Field("src", "choice", "built-in", choices=FT_SOURCES, help="where the task comes from"),
        Field("task", "choice", "", choices=("",) + _task_names(), help="built-in task ('' = the model's default)"),
        Field("hub", "str", "", max_len=96, help="hub data set name, e.g. glue/sst2"),
        Field("method", "choice", "lora", choices=tuple(METHODS)),
        Field("steps", "int", TrainConfig.steps, min=2, max=500),
        Field("lr", "float", 0.0, min=0.0, max=0.1, help="0 = the method's default"),
        Field("bs", "int", 16, min=1, max=64),
        Field("seed", "int", 0, min=0, max=2**31 - 1),
        Field("device", "choice", "auto", choices=FT_DEVICES),
        Field("prec", "choice", TrainConfig.precision, choices=PRECISIONS,
              help="fp32; bf16 autocast (CPU and CUDA); fp16 autocast with a gradient scaler (CUDA only)"),
        Field("ckpt", "bool", TrainConfig.checkpointing, help="gradient checkpointing of every layer"),
    ])


def finetune_knob_schema(method: str) -> Schema:
    """The knobs of ``method`` as Fine-tune's settings (``k_<knob>``)."""
    from explorer.methods import METHODS

    return Schema(knob_fields(METHODS[method].knobs, prefix="k_"))


def _finetune(values: Mapping) -> Schema:
    base = finetune_base_schema()
    return base + finetune_knob_schema(base.parse(values)[0]["method"])


def compare_schema() -> Schema:
    from explorer.methods import SWEEP_METHODS

    return Schema([
        Field("x", "choice", "trainable", choices=("trainable", "memory"), help="x axis of the accuracy chart"),
        Field("curve", "choice", "accuracy", choices=("accuracy", "loss"), help="curves overlaid"),
        Field("sw_model", "choice", "minilm", choices=SWEEP_MODELS),
        Field("sw_methods", "multi", ["lora", "smt"], choices=SWEEP_METHODS),
        Field("sw_ranks", "multi", ["1", "4", "16"], choices=tuple(str(r) for r in SWEEP_RANKS)),
        Field("sw_steps", "int", 60, min=4, max=400),
        Field("sw_seed", "int", 0, min=0, max=2**31 - 1),
    ])


def _memory(values: Mapping) -> Schema:
    from explorer.views import memory_views as V

    return V.page_schema()


def smt_schema() -> Schema:
    from explorer import smt_inspector as A
    from explorer.methods.smt_blocks import SCORES
    from explorer.targets import ALL_TYPES

    types = tuple(ALL_TYPES)
    return Schema([
        Field("model", "choice", "tiny-llama", choices=SMT_MODELS),
        Field("task", "choice", "", choices=("",) + _task_names(), help="'' = the model's built-in default task"),
        Field("ws", "int", 16, min=1, max=200, help="warm-up steps (batches whose gradients are summed)"),
        Field("bs", "int", 4, min=1, max=32),
        Field("len", "int", 128, min=16, max=512),
        Field("mode", "choice", "full", choices=tuple(A.MODES)),
        Field("seed", "int", 0, min=0, max=2**31 - 1),
        Field("b", "int", 0, min=0, max=4096, help="block size (0 = auto)"),
        Field("budget", "choice", "blocks", choices=("blocks", "density")),
        Field("n", "int", 0, min=0, max=10_000_000, help="number of blocks (0 = auto: about 1% of all parameters)"),
        Field("dens", "float", 0.01, min=0.0001, max=1.0),
        Field("score", "choice", "abs-mean", choices=tuple(SCORES)),
        Field("rule", "choice", "global", choices=tuple(A.RULES)),
        Field("types", "multi", A.default_types(), choices=types),
        Field("layer", "int", 0, min=0, max=200),
        Field("mat", "choice", "v", choices=types),
        Field("log", "bool", False),
        Field("grid", "choice", "v", choices=types),
    ])


def claims_schema() -> Schema:
    from explorer.claims import specs

    return Schema([Field("claim", "choice", "all", choices=("all",) + tuple(specs.NAMES),
                         help="one claim's card only (a link for the projector), or all")])


def _board(values: Mapping) -> Schema:
    # the page's choices are the model · task pairs on the board at the time; a lesson can only name one as text
    return Schema([Field("group", "str", "", max_len=130)])


def _home(values: Mapping) -> Schema:
    return Schema([])


SCHEMAS: dict[str, Callable[[Mapping], Schema]] = {
    "home": _home, "playground": _playground, "finetune": _finetune, "compare": lambda v: compare_schema(),
    "memory": _memory, "smt": lambda v: smt_schema(), "claims": lambda v: claims_schema(), "board": _board,
    "lesson": _home,  # the Lesson page has no setting of its own (the room is its state; the token is never in a URL)
}
