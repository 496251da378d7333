"""A data file's bytes as text: the encoding detected (or chosen) and said, binary files refused, library
loggers silenced while a file loads.  Every refusal is one DataError line."""

from __future__ import annotations

import codecs
import contextlib
import re
import threading

from explorer.errors import DataError

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
