"""mlcak_lib.manifest and mlcak_lib.reference: the shipped manifest verifies; bad ones fail clearly."""

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from mlcak_lib.manifest import (
    ManifestError,
    read_manifest,
    verify_file,
    verify_manifest,
    write_manifest,
)
from mlcak_lib.reference import (
    VINDR_GLOBAL_LABELS,
    VINDR_LOCAL_LABELS,
    vindr_box_size_quantiles,
    vindr_class_stats,
    vindr_summary,
)

ROOT = Path(__file__).resolve().parent.parent


def test_real_manifest_verifies():
    results = verify_manifest(ROOT / "data_manifest.csv")
    status = {r.id: r.status for r in results}
    assert status["rg1_uncr"] == "ok" and status["vindr_class_stats_derived"] == "ok"
    assert status["vindr_cxr"] == "skipped" and status["medmnist_chestmnist"] == "skipped"
    assert all(s in ("ok", "skipped") for s in status.values())
    assert (ROOT / "data_manifest.csv").read_bytes().endswith(b"\n")


def _copy_with_table(tmp_path):
    entries = read_manifest(ROOT / "data_manifest.csv")
    table = next(e for e in entries if e.id == "vindr_class_stats_derived")
    target = tmp_path / table.local_path
    target.parent.mkdir(parents=True)
    shutil.copy(ROOT / table.local_path, target)
    return table


def test_wrong_checksum_and_missing_file(tmp_path):
    table = _copy_with_table(tmp_path)
    manifest = tmp_path / "data_manifest.csv"
    write_manifest([table], manifest)
    assert [r.status for r in verify_manifest(manifest)] == ["ok"]
    write_manifest([replace(table, sha256="0" * 64)], manifest)
    with pytest.raises(ManifestError, match=r"vindr_class_stats_derived.*expected sha256 0{64}, found [0-9a-f]{64}.*derive_reference_tables"):
        verify_manifest(manifest)
    write_manifest([replace(table, bytes=table.bytes + 1)], manifest)
    with pytest.raises(ManifestError, match=rf"expected {table.bytes + 1} bytes, found {table.bytes} bytes"):
        verify_manifest(manifest)
    write_manifest([replace(table, local_path="mlcak_lib/data/gone.csv")], manifest)
    with pytest.raises(ManifestError, match=r"'vindr_class_stats_derived' is missing.*To fix"):
        verify_manifest(manifest)


def test_unknown_access_and_ids(tmp_path):
    table = _copy_with_table(tmp_path)
    manifest = tmp_path / "data_manifest.csv"
    write_manifest([replace(table, access="borrowed")], manifest)
    with pytest.raises(ManifestError, match="unknown access kind 'borrowed'"):
        verify_manifest(manifest)
    with pytest.raises(ManifestError, match="unknown asset id"):
        verify_manifest(ROOT / "data_manifest.csv", ids=["nope"])


def test_verify_file(tmp_path):
    path = tmp_path / "x.bin"
    path.write_bytes(b"abc")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert verify_file(path, sha, 3, "x") == path
    with pytest.raises(ManifestError, match="'x' is corrupt"):
        verify_file(path, "f" * 64, 3, "x", fix="rerun the builder")


def test_reference_tables():
    stats = vindr_class_stats()
    assert len(stats) == 15 and len(vindr_class_stats(include_no_finding=False)) == 14
    nodule = stats.set_index("class_name").loc["Nodule/Mass"]
    assert nodule["pct_boxes_lt1px_at28"] == pytest.approx(44.0)
    assert vindr_summary()["pct_images_no_finding"] == pytest.approx(70.71)
    assert list(vindr_box_size_quantiles()["quantile"])[3] == 0.5
    assert len(VINDR_LOCAL_LABELS) == 22 and len(VINDR_GLOBAL_LABELS) == 6
    assert set(stats["class_name"]) - {"No finding"} <= set(VINDR_LOCAL_LABELS)
