"""Security: no remote code, no pickle, upload limits, no path out of the session's folder."""

from __future__ import annotations

import ast
import io
import os
import tokenize
from pathlib import Path

import pytest

from explorer.workshop import security, sessions
from explorer.errors import UserError
from explorer.workshop.security import UnsafePathError, UploadError, safe_join

ROOT = Path(__file__).resolve().parents[2]


def source_files() -> list[Path]:
    files = sorted((ROOT / "explorer").rglob("*.py")) + sorted((ROOT / "pages").glob("*.py"))
    files += [ROOT / "app.py"] + sorted((ROOT / "ui").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
    return [f for f in files if f.exists()]


def test_source_scan_covers_the_project():
    rel = {f.relative_to(ROOT).as_posix() for f in source_files()}
    assert {"explorer/models.py", "explorer/sparse.py", "app.py", "ui/frame.py", "ui/state.py", "ui/board_panel.py",
            "ui/runs_panel.py", "ui/smt_panel.py"} <= rel
    packages = {d.name for d in (ROOT / "explorer").iterdir() if (d / "__init__.py").exists()}
    assert {"methods", "engine", "memory", "data", "workshop", "views", "smt_inspector", "cli", "claims"} <= packages
    # every sub-package's modules are scanned, not only its __init__
    assert all(any(r.startswith(f"explorer/{p}/") and not r.endswith("__init__.py") for r in rel) for p in packages)
    assert any(f.parent.name == "pages" for f in source_files())


# ----------------------------------------------------------------------------- no pickle, no remote code

PICKLE_NAMES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "read_pickle", "to_pickle",
                "shelve", "marshal"}


def code_names(path: Path) -> list[tuple[int, str]]:
    """NAME tokens of a file (comments and strings left out)."""
    with path.open("rb") as f:
        return [(t.start[0], t.string) for t in tokenize.tokenize(f.readline) if t.type == tokenize.NAME]


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _call_name(node: ast.Call) -> str:
    f = node.func
    parts = []
    while isinstance(f, ast.Attribute):
        parts.append(f.attr)
        f = f.value
    if isinstance(f, ast.Name):
        parts.append(f.id)
    return ".".join(reversed(parts))


def scan(path: Path) -> list[str]:
    problems = []
    for line, name in code_names(path):
        if name in PICKLE_NAMES:
            problems.append(f"{path.name}:{line}: uses {name}")
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            cname = _call_name(node)
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if cname.endswith("torch.load"):
                if not _is_true(kw.get("weights_only")):
                    problems.append(f"{path.name}:{node.lineno}: torch.load without weights_only=True")
            if cname in ("np.load", "numpy.load") and "allow_pickle" in kw and \
                    not (isinstance(kw["allow_pickle"], ast.Constant) and kw["allow_pickle"].value is False):
                problems.append(f"{path.name}:{node.lineno}: np.load with allow_pickle")
            for k in node.keywords:
                if k.arg == "trust_remote_code" and not (isinstance(k.value, ast.Constant) and k.value.value is False):
                    problems.append(f"{path.name}:{node.lineno}: trust_remote_code is not the constant False")
                if k.arg is None:  # **kwargs into a model loader could carry trust_remote_code
                    if "from_pretrained" in cname:
                        problems.append(f"{path.name}:{node.lineno}: **kwargs passed to {cname}")
        if isinstance(node, ast.Name) and node.id == "trust_remote_code":
            problems.append(f"{path.name}:{node.lineno}: trust_remote_code read from a variable")
        if isinstance(node, ast.Constant) and node.value == "trust_remote_code":
            problems.append(f"{path.name}:{node.lineno}: 'trust_remote_code' as a string key (settable from outside)")
    return problems


def test_no_pickle_and_trust_remote_code_never_on():
    problems = [p for f in source_files() for p in scan(f)]
    assert not problems, "\n".join(problems)


def test_scanner_catches_what_it_should(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import pickle\nimport torch, numpy as np\nx = torch.load('a')\ny = torch.load('b', weights_only=False)\n"
                   "z = np.load('c', allow_pickle=True)\nfrom transformers import AutoModel\n"
                   "AutoModel.from_pretrained('m', trust_remote_code=True)\nflag = params['trust_remote_code']\n"
                   "AutoModel.from_pretrained('m', trust_remote_code=flag)\nAutoModel.from_pretrained('m', **opts)\n"
                   "# pickle in a comment is fine\ns = 'pickle in a string is fine'\n"
                   "ok = torch.load('d', weights_only=True)\n")
    problems = scan(bad)
    text = "\n".join(problems)
    assert "bad.py:1: uses pickle" in text
    assert "bad.py:3: torch.load without" in text and "bad.py:4: torch.load without" in text
    assert "bad.py:5: np.load with allow_pickle" in text
    assert "bad.py:7: trust_remote_code is not" in text and "bad.py:9: trust_remote_code" in text
    assert "bad.py:8: 'trust_remote_code' as a string key" in text
    assert "bad.py:10: **kwargs" in text
    assert not any(p.startswith(("bad.py:11", "bad.py:12", "bad.py:13")) for p in problems)


def test_url_trust_remote_code_is_ignored_by_every_schema():
    from tests.support.schemas import all_schemas

    for name, schema in all_schemas():
        assert "trust_remote_code" not in schema, name
        vals, warns = schema.parse({"trust_remote_code": "1", "trust-remote-code": "true"})
        assert vals == schema.defaults() and not warns, name


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory, tiny_bert):
    """tiny-bert saved as a local model folder (safetensors + JSON + tokenizer)."""
    d = tmp_path_factory.mktemp("tinyfolder") / "tiny-bert-folder"
    tiny_bert.model.save_pretrained(str(d))
    tiny_bert.tokenizer.save_pretrained(str(d))
    return d


def test_url_with_trust_remote_code_loads_with_it_off(tiny_folder, monkeypatch):
    """A playground link that asks for remote code: the page runs, every loader call has it off."""
    import transformers
    from streamlit.testing.v1 import AppTest

    calls = []
    for cls in (transformers.AutoConfig, transformers.AutoModelForSequenceClassification,
                transformers.AutoModelForCausalLM, transformers.AutoTokenizer):
        orig = cls.from_pretrained

        def wrapped(*a, _orig=orig, _cls=cls.__name__, **k):
            calls.append((_cls, dict(k)))
            return _orig(*a, **k)
        monkeypatch.setattr(cls, "from_pretrained", wrapped)
    from tests.support.apptest import page_app

    at = page_app(str(ROOT / "pages" / "1_Methods_playground.py"), 120)
    at.query_params.update({"model": str(tiny_folder), "trust_remote_code": "1", "m1": "lora"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    assert calls, "the folder was not loaded through transformers"
    assert {c for c, _ in calls} >= {"AutoConfig", "AutoModelForSequenceClassification"}
    assert all(not k.get("trust_remote_code") for _, k in calls), calls
    assert any(k.get("trust_remote_code") is False for c, k in calls if c.startswith("AutoModel"))
    assert "trust_remote_code" not in at.query_params  # not echoed back into the link


# ----------------------------------------------------------------------------- paths

def test_safe_join_accepts_names_inside(tmp_path):
    (tmp_path / "sub").mkdir()
    assert safe_join(tmp_path, "a.csv") == (tmp_path / "a.csv").resolve()
    assert safe_join(tmp_path, "sub/b.json") == (tmp_path / "sub" / "b.json").resolve()
    assert safe_join(tmp_path, "./sub/./c") == (tmp_path / "sub" / "c").resolve()
    (tmp_path / "link_in").symlink_to(tmp_path / "sub")
    assert safe_join(tmp_path, "link_in/x") == (tmp_path / "sub" / "x").resolve()


@pytest.mark.parametrize("name", ["../x", "sub/../../x", "..", "/etc/passwd", "//etc/passwd", "~/x", "~root",
                                  "C:\\Windows\\x", "C:x", "\\\\server\\share\\x", "a\\..\\..\\b", "a\x00b",
                                  "a\nb", "", "   ", "x" * 300, "a/" + "y" * 256, "sub/..", "%2e%2e/../x"])
def test_safe_join_refuses_escapes(tmp_path, name):
    (tmp_path / "sub").mkdir()
    with pytest.raises(UnsafePathError) as e:
        safe_join(tmp_path, name)
    assert isinstance(e.value, UserError) and "\n" not in str(e.value)


def test_safe_join_refuses_symlink_out(tmp_path):
    base = tmp_path / "session"
    base.mkdir()
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("secret")
    (base / "evil").symlink_to(outside)
    (base / "evil_file").symlink_to(outside / "key.txt")
    for name in ("evil/key.txt", "evil_file", "evil", "evil/new.csv"):
        with pytest.raises(UnsafePathError):
            safe_join(base, name)
    with pytest.raises(UnsafePathError):
        safe_join(base, 42)
    assert not security.is_inside(base, base / "evil_file") and security.is_inside(base, base / "ok")


def test_session_ids_are_server_made_and_folders_private(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_SESSIONS", str(tmp_path / "sessions"))
    a, b = sessions.new_session_id(), sessions.new_session_id()
    assert a != b and sessions.valid_session_id(a) and len(a) >= 16
    da = sessions.session_dir(a)
    assert da.parent == (tmp_path / "sessions").resolve() and da.is_dir()
    assert oct(da.stat().st_mode & 0o777) == "0o700"
    for bad in ["../" + a, "/etc", "abc", a + "/x", "..", "", None, "a" * 65, "é" * 20]:
        with pytest.raises(UnsafePathError):
            sessions.session_dir(bad)
    old = sessions.session_dir(b)
    os.utime(old, (1, 1))
    assert sessions.cleanup(max_age_s=3600) == 1 and not old.exists() and da.exists()


# ----------------------------------------------------------------------------- uploads

CSV = "text,label\n" + "".join(f"sample text number {i},{'pos' if i % 2 else 'neg'}\n" for i in range(40))


class FakeUpload(io.BytesIO):
    """Like Streamlit's UploadedFile: a BytesIO with a name and a size."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name, self.size = name, len(data)


def test_upload_is_stored_under_a_server_name_inside_the_session(tmp_path):
    path = security.store_upload(tmp_path, "../../etc/passwd.csv", CSV.encode())
    assert path.parent == (tmp_path / "uploads").resolve()
    assert path.name.startswith("upload-") and path.suffix == ".csv" and "passwd" not in path.name
    assert path.read_text() == CSV
    assert not (tmp_path.parent / "etc").exists()
    p2 = security.store_upload(tmp_path, "data.csv", FakeUpload(CSV.encode(), "data.csv"))
    assert p2 != path and p2.read_bytes() == CSV.encode()
    assert [f.name for f in (tmp_path / "uploads").iterdir() if f.name.startswith(".")] == []  # no temp files


def test_uploaded_task_loads_with_the_users_name(tmp_path):
    task = security.load_uploaded_task(tmp_path, "my reviews.csv", FakeUpload(CSV.encode(), "my reviews.csv"),
                                       "seq-cls")
    assert task.name == "my reviews.csv" and task.num_labels == 2 and len(task.train) + len(task.eval) == 40


def test_upload_size_limit_is_enforced_in_the_core(tmp_path, monkeypatch):
    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "0.001")  # 1048 bytes
    limit = security.max_upload_bytes()
    assert limit == int(0.001 * 1024 * 1024)
    ok = b"text,label\n" + b"a,b\n" * ((limit - 11) // 4)
    assert len(ok) <= limit
    security.store_upload(tmp_path, "ok.csv", ok)
    big = ok + b"x" * (limit - len(ok) + 1)
    for data in (big, FakeUpload(big, "big.csv")):
        with pytest.raises(UploadError, match="larger than the upload limit"):
            security.store_upload(tmp_path, "big.csv", data)
    with pytest.raises(UploadError, match="larger than the upload limit"):
        security.load_uploaded_task(tmp_path, "big.csv", big, "seq-cls")

    class Huge:
        name, size = "huge.csv", 10**12

        def read(self, n=-1):
            raise AssertionError("a file over the limit must not be read")
    with pytest.raises(UploadError):
        security.store_upload(tmp_path, "huge.csv", Huge())
    stored = [f for f in (tmp_path / "uploads").iterdir() if not f.name.endswith(security.META_SUFFIX)]
    assert len(stored) == 1  # only the accepted one
    monkeypatch.setenv("PEFT_EXPLORER_MAX_UPLOAD_MB", "nonsense")
    assert security.max_upload_bytes() == 20 * 1024 * 1024


@pytest.mark.parametrize("name,data,msg", [
    ("model.pkl", b"\x80\x04K\x01.", "not read here"),
    ("weights.bin", b"\x00" * 10, "not read here"),
    ("weights.pt", b"PK\x03\x04", "not read here"),
    ("script.py", b"import os", "not read here"),
    ("noext", b"abc", "not read here"),
    ("empty.csv", b"", "is empty"),
    ("x.csv", None, "no file"),
])
def test_upload_type_and_content_checks(tmp_path, name, data, msg):
    with pytest.raises(UploadError, match=msg):
        security.store_upload(tmp_path, name, data)


def test_json_and_safetensors_uploads(tmp_path):
    import torch
    from safetensors.torch import save

    assert security.read_json_upload("h.json", b'{"runs": []}') == {"runs": []}
    for bad in (b"{not json", b"\xff\xfe", b"[" * 100000):
        with pytest.raises(UploadError):
            security.read_json_upload("h.json", bad)
    t = {"w": torch.arange(6.0).reshape(2, 3)}
    back = security.read_safetensors_upload("a.safetensors", save(t))
    assert torch.equal(back["w"], t["w"])
    import pickle as _p  # the test itself may use pickle to build a hostile file  # noqa: S403

    with pytest.raises(UploadError, match="not a valid safetensors"):
        security.read_safetensors_upload("a.safetensors", _p.dumps({"w": 1}))
    with pytest.raises(UploadError, match="not read here"):
        security.read_json_upload("a.pkl", b"{}")
