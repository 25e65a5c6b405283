"""The one cache story (mlcak_lib.cache): load-or-train hits and misses, keys, and what enters the fingerprints."""

import ast
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from mlcak_lib import __version__, cache
from mlcak_lib.datasets import SynthCXRDataset
from mlcak_lib.models import build_vit
from mlcak_lib.train import TrainConfig, fit
from toy_data import toy_split

TINY = dict(depth=1, embed_dim=32, num_heads=2, stem_channels=(8, 16))
FAST = TrainConfig(epochs=1, batch_size=16, lr=2e-3, warmup_epochs=0.5, patience=None, seed=0)
PACKAGE = Path(cache.__file__).resolve().parent


def _model(seed=0):
    return build_vit(28, 3, seed=seed, **TINY)


# --------------------------------------------------------------------------------------------
# Layer 1: trained models
# --------------------------------------------------------------------------------------------

def test_load_or_train_hit_miss_and_invalidation(tmp_path):
    data = toy_split(32, resolutions=(28,), seed=5)
    calls = []

    def train_fn(model):
        calls.append(1)
        return fit(model, data, None, config=FAST, progress=False)

    cfg = {"data": "toy", "model": TINY, "train": FAST.as_dict()}
    m1, h1, info1 = cache.load_or_train("toy", cfg, _model, train_fn, cache_folder=tmp_path)
    assert not info1["cache_hit"] and info1["path"] == f"models/toy-{info1['hash']}.pt" and len(calls) == 1
    assert (tmp_path / info1["path"]).is_file() and info1["hash"] == cache.config_hash("toy", cfg)
    m2, h2, info2 = cache.load_or_train("toy", cfg, _model, train_fn, tmp_path)  # cache folder: 5th positional
    assert info2["cache_hit"] and info2["hash"] == info1["hash"] and len(calls) == 1
    assert all(torch.equal(p, q) for p, q in zip(m1.state_dict().values(), m2.state_dict().values()))
    assert h2[0]["train_loss"] == h1[0]["train_loss"] and not m2.training
    saved = torch.load(tmp_path / info1["path"], weights_only=True)
    assert json.loads(saved["config"]) == json.loads(json.dumps(cfg)) and saved["name"] == "toy"
    _, _, info3 = cache.load_or_train("toy", {**cfg, "train": FAST.replace(seed=1).as_dict()}, _model, train_fn,
                                      cache_folder=tmp_path)
    assert not info3["cache_hit"] and info3["hash"] != info1["hash"] and len(calls) == 2
    _, _, info4 = cache.load_or_train("toy-renamed", cfg, _model, train_fn, cache_folder=tmp_path)
    assert not info4["cache_hit"] and info4["hash"] != info1["hash"]  # the name is part of the key


def test_config_hash_covers_name_config_and_code():
    cfg = {"a": 1, "b": [1, 2]}
    assert cache.config_hash("x", cfg, code="a") != cache.config_hash("x", cfg, code="b")
    assert cache.config_hash("x", cfg) != cache.config_hash("y", cfg)
    assert cache.config_hash("x", cfg) == cache.config_hash("x", {"b": [1, 2], "a": 1})  # key order does not matter
    assert cache.config_hash("x", cfg) == cache.config_hash("x", cfg, code=cache.code_fingerprint())
    assert len(cache.config_hash("x", cfg)) == 12


def test_load_only_never_trains(tmp_path):
    def never(model):
        raise AssertionError("load_only must not train")

    with pytest.raises(cache.CacheMiss, match="no cached model models/absent-") as info:
        cache.load_or_train("absent", {"x": 1}, _model, never, cache_folder=tmp_path, load_only=True)
    assert isinstance(info.value, FileNotFoundError)
    assert not list((tmp_path / "models").glob("*.pt"))


# --------------------------------------------------------------------------------------------
# What enters the code fingerprint: every module is classified, and the hash follows the source
# --------------------------------------------------------------------------------------------

def _package_parts(root: Path) -> set[str]:
    """Every top-level ``.py`` module (stem) and every subfolder holding Python source of the package."""
    modules = {p.stem for p in root.glob("*.py")}
    packages = {p.name for p in root.iterdir()
                if p.is_dir() and not p.name.startswith((".", "__")) and any(p.rglob("*.py"))}
    return modules | packages


def test_every_module_is_classified_exactly_once():
    model, not_model = list(cache.MODEL_CODE), list(cache.NOT_MODEL_CODE)
    assert len(set(model)) == len(model) and len(set(not_model)) == len(not_model), "a name listed twice"
    both = set(model) & set(not_model)
    assert not both, f"in both MODEL_CODE and NOT_MODEL_CODE: {sorted(both)}"
    parts = _package_parts(PACKAGE)
    missing = parts - set(model) - set(not_model)
    assert not missing, f"decide for {sorted(missing)}: add each to cache.MODEL_CODE or cache.NOT_MODEL_CODE"
    data_files = {n for n in model if "/" in n}  # package data that steers models (named with its suffix)
    assert all((PACKAGE / n).is_file() for n in data_files), sorted(data_files)
    stale = (set(model) | set(not_model)) - data_files - parts
    assert not stale, f"cache lists modules that do not exist: {sorted(stale)}"
    for name in (*model, *not_model, *cache.SIMULATOR_CODE):
        assert cache._module_files(name), name  # every listed name resolves to source files
    assert set(cache.SIMULATOR_CODE) <= set(model)  # what changes the images changes the models too
    with pytest.raises(ValueError, match="no module or package 'nonexistent'"):
        cache.source_hash("nonexistent")


def test_the_classification_check_sees_new_modules(tmp_path):
    (tmp_path / "known.py").write_text("")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.py").write_text("")
    (tmp_path / "assets").mkdir()
    (tmp_path / "assets" / "table.csv").write_text("a\n")  # a data folder is not code
    (tmp_path / "__pycache__").mkdir()
    assert _package_parts(tmp_path) == {"known", "sub"}


def _copy_package(tmp_path, monkeypatch) -> Path:
    """A copy of the package's Python source (and the small data tables it hashes) that ``cache`` hashes
    instead of the real one."""
    copy = tmp_path / "mlcak_lib"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.npz"))
    monkeypatch.setattr(cache, "_ROOT", copy)
    return copy


@pytest.fixture
def package_copy(tmp_path, monkeypatch):
    return _copy_package(tmp_path, monkeypatch)


def test_source_hash_follows_file_content(tmp_path, monkeypatch):
    before = {name: cache.source_hash(name) for name in ("train", "dicom", "synth")}
    package_copy = _copy_package(tmp_path, monkeypatch)
    assert {name: cache.source_hash(name) for name in before} == before  # a copy hashes like the original
    path = package_copy / "train.py"
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    assert cache.source_hash("train") != before["train"]
    assert cache.source_hash("dicom") == before["dicom"]
    assert cache.source_hash("train", "dicom") != cache.source_hash("train")
    path.write_text(original)
    assert cache.source_hash("train") == before["train"]  # content, not modification time
    # a subpackage: an edited file and a new file both change its hash
    inner = sorted((package_copy / "synth").rglob("*.py"))[-1]
    inner.write_text(inner.read_text() + "\n# edit\n")
    edited = cache.source_hash("synth")
    assert edited != before["synth"]
    (package_copy / "synth" / "extra.py").write_text("X = 1\n")
    assert cache.source_hash("synth") not in (before["synth"], edited)


def test_fingerprints_follow_only_their_modules(package_copy):
    # the unwrapped functions: the process-wide memo of the real fingerprints stays untouched
    code, simulator = cache.code_fingerprint.__wrapped__(), cache.simulator_fingerprint.__wrapped__()
    assert code.startswith(f"{__version__}+") and len(simulator) == 10

    def edit(name):
        path = package_copy / f"{name}.py"
        path.write_text(path.read_text() + "\n# edit\n")

    edit("viz")  # presentation: no model changes
    assert cache.code_fingerprint.__wrapped__() == code and cache.simulator_fingerprint.__wrapped__() == simulator
    edit("train")  # the training loop: every model changes, the simulated images do not
    assert cache.code_fingerprint.__wrapped__() != code and cache.simulator_fingerprint.__wrapped__() == simulator
    code = cache.code_fingerprint.__wrapped__()
    edit("datasets")  # the simulator's dataset: both
    assert cache.code_fingerprint.__wrapped__() != code and cache.simulator_fingerprint.__wrapped__() != simulator
    code, simulator = cache.code_fingerprint.__wrapped__(), cache.simulator_fingerprint.__wrapped__()
    table = package_copy / "data" / "vindr_cxr_class_stats_derived.csv"  # the lesion-size calibration: both
    table.write_text(table.read_text() + "\n")
    assert cache.code_fingerprint.__wrapped__() != code and cache.simulator_fingerprint.__wrapped__() != simulator


def test_simulated_images_are_keyed_by_the_simulator_source():
    ds = SynthCXRDataset("val", resolutions=(28,), size=2, seed=3)
    key = ds.cache_key()
    assert cache.simulator_fingerprint() in key
    assert ds.config.config_hash() in key and "val" in key and "s3" in key and "n2" in key
    assert ds.cache_path().name == key


# --------------------------------------------------------------------------------------------
# The lists are closed under imports: code a model (or a simulated image) depends on is in its key
# --------------------------------------------------------------------------------------------

#: Package modules a keyed module may import without their source entering the key: settings and key
#: logic (config, cache), BLAS thread limits (threads), checksum verification (manifest), figures (viz),
#: and the real-data adapters (their source enters real-data keys through ``adapter_code``), committed
#: checkpoints (loaded only when their key matches: ``checkpoints``).
CANNOT_CHANGE_A_MODEL = {"config", "cache", "checkpoints", "threads", "manifest", "viz", "realdata"}


def _package_imports(name: str) -> set[str]:
    """Top-level package modules that module (or subpackage) ``name`` imports, anywhere in its source."""
    found = set()
    for path in cache._module_files(name):
        here = list(path.relative_to(PACKAGE).parts[:-1])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = here[: len(here) - (node.level - 1)] + [p for p in (node.module or "").split(".") if p]
                found |= {target[0]} if target else {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlcak_lib."):
                found.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("mlcak_lib.")}
    return found - {name}


@pytest.mark.parametrize("name", [n for n in cache.MODEL_CODE if "/" not in n])
def test_model_code_is_closed_under_imports(name):
    outside = _package_imports(name) - set(cache.MODEL_CODE) - CANNOT_CHANGE_A_MODEL
    assert not outside, f"{name} imports {sorted(outside)}, whose source is not in cache.MODEL_CODE"


#: Imports of teacher code from outside TEACHER_CODE, each with the reason it cannot change the teacher.
TEACHER_EXCEPTIONS = {
    # LocalObjective reads variants.default_weights only when lambda_local is None; the teacher passes its own
    # weight (recipes.TEACHER_OBJECTIVE), which enters the teacher's configuration dict.
    ("local_task", "variants"),
}


@pytest.mark.parametrize("name", [n for n in cache.TEACHER_CODE if "/" not in n])
def test_teacher_code_is_closed_under_imports(name):
    outside = _package_imports(name) - set(cache.TEACHER_CODE) - CANNOT_CHANGE_A_MODEL
    outside = {m for m in outside if (name, m) not in TEACHER_EXCEPTIONS}
    assert not outside, f"{name} imports {sorted(outside)}, whose source is not in cache.TEACHER_CODE"


@pytest.mark.parametrize("name", [n for n in cache.SIMULATOR_CODE if "/" not in n])
def test_simulator_code_is_closed_under_imports(name):
    outside = _package_imports(name) - set(cache.SIMULATOR_CODE) - CANNOT_CHANGE_A_MODEL
    assert not outside, f"{name} imports {sorted(outside)}, whose source is not in cache.SIMULATOR_CODE"


def test_import_scan_sees_every_import_form(tmp_path, monkeypatch):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("from .b import x\nfrom . import c, d\nimport mlcak_lib.e\nfrom mlcak_lib.f import y\n"
                              "def g():\n    from .h import z\n")
    (pkg / "sub" / "inner.py").write_text("from ..i import w\nfrom .sibling import v\n")
    monkeypatch.setattr(cache, "_ROOT", pkg)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", pkg)
    assert _package_imports("a") == {"b", "c", "d", "e", "f", "h"}
    assert _package_imports("sub") == {"i"}  # its own modules are inside it


# Packages with a code key of their own (notebooks 07 and 08: detection, ctxr), checked the same way.

def assert_outside_model_code(package, code):
    """``package`` never enters the teachers' and students' keys, and ``code`` is closed under imports."""
    assert package in cache.NOT_MODEL_CODE and package not in cache.MODEL_CODE + cache.TEACHER_CODE
    for name in (n for n in code if "/" not in n):
        outside = _package_imports(name) - set(code) - CANNOT_CHANGE_A_MODEL - {"__version__"}
        assert not outside, f"{name} imports {sorted(outside)}, whose source is not in {package}.keys"


def assert_fingerprint_follows(fingerprint, edited, tmp_path, monkeypatch):
    """Editing ``edited`` (a path inside mlcak_lib) changes ``fingerprint`` and leaves the teacher's key alone."""
    before, teacher = fingerprint.__wrapped__(), cache.teacher_fingerprint.__wrapped__()
    copy = tmp_path / "mlcak_lib"
    shutil.copytree(cache._ROOT, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.npz", "*.pt"))
    monkeypatch.setattr(cache, "_ROOT", copy)
    assert fingerprint.__wrapped__() == before
    path = copy / edited
    path.write_text(path.read_text() + "\n# an edit\n")
    assert fingerprint.__wrapped__() != before
    assert cache.teacher_fingerprint.__wrapped__() == teacher  # the committed teacher stays valid
