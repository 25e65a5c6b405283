"""The data manifest: every data asset the course uses, with provenance, licence and checksum.

``data_manifest.csv`` (repository root; installed with the package as ``mlcak_lib/data/data_manifest.csv``) has one row per asset with the columns
``id, kind, description, source, license, access, local_path, sha256, bytes, used_in, citation``.
``access`` says how a learner gets the asset:

==============  ===============================================================  ============
access          meaning                                                          verified
==============  ===============================================================  ============
bundled         a file committed in the repository                               size + sha256
derived         a small table/array built by a script in ``scripts/``           size + sha256
pypi            a file inside a pip package (``pydicom-data:RG1_UNCR.dcm``)      size + sha256
download        public, but fetched by the user (MedMNIST+)                      skipped
credentialed    needs an account and a data-use agreement (VinDr-CXR)            skipped
==============  ===============================================================  ============

:func:`verify_manifest` checks every local asset and raises :class:`ManifestError` with an
actionable message (which asset, expected vs found, how to fix) instead of a stack trace from
deep inside a loader. Introduced in notebook 01.
"""

from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from .config import repo_root

MANIFEST_NAME = "data_manifest.csv"
COLUMNS: tuple[str, ...] = (
    "id", "kind", "description", "source", "license", "access",
    "local_path", "sha256", "bytes", "used_in", "citation",
)
ACCESS_KINDS: tuple[str, ...] = ("bundled", "pypi", "derived", "credentialed", "download")
LOCAL_ACCESS: tuple[str, ...] = ("bundled", "pypi", "derived")

_FIX = {
    "bundled": "reinstall the course (`pip install -e .` in a fresh checkout, or `git checkout -- {path}`)",
    "derived": "rebuild it with the script named in its `source` column (e.g. `python scripts/derive_reference_tables.py`), or reinstall the course",
    "pypi": "install the package that ships it (`pip install --force-reinstall {package}`)",
}
_PYPI_PACKAGES = {"pydicom-data": "pydicom-data"}


class ManifestError(RuntimeError):
    """A data asset is missing, corrupt, or the manifest itself is malformed."""


@dataclass(frozen=True)
class ManifestEntry:
    """One row of ``data_manifest.csv``."""

    id: str
    kind: str
    description: str
    source: str
    license: str
    access: str
    local_path: str
    sha256: str
    bytes: int | None
    used_in: str
    citation: str

    @property
    def is_local(self) -> bool:
        """True for assets the course ships or installs (bundled, derived, pypi)."""
        return self.access in LOCAL_ACCESS


@dataclass(frozen=True)
class AssetStatus:
    """Result of checking one asset: ``status`` is ``"ok"``, ``"skipped"`` or ``"reachable"``/``"unreachable"``."""

    id: str
    access: str
    status: str
    detail: str
    path: Path | None = None

    def __str__(self) -> str:
        return f"{self.id:<34} {self.access:<12} {self.status:<8} {self.detail}"


#: The manifest's copy inside the package: in a checkout a symbolic link to the root file (one source of truth),
#: in an installed wheel (``pip install "mlcak @ git+..."``, as on Colab) the file itself, so the simulator can
#: verify its assets without a checkout.
PACKAGED_MANIFEST = Path(__file__).resolve().parent / "data" / MANIFEST_NAME


def default_manifest_path() -> Path:
    """``data_manifest.csv`` at the repository root, else the copy installed with the package (:data:`PACKAGED_MANIFEST`)."""
    candidates = []
    root = repo_root()
    if root is not None:
        candidates.append(root / MANIFEST_NAME)
    candidates += [Path(__file__).resolve().parent.parent / MANIFEST_NAME, PACKAGED_MANIFEST]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ManifestError(
        f"{MANIFEST_NAME} not found next to the installed library; it ships with the repository "
        "checkout (git clone the course and `pip install -e .`), or pass path= explicitly."
    )


def _base_dir(manifest_path: Path) -> Path:
    """The folder the manifest's ``local_path`` entries are relative to: the repository root, which for the copy
    installed inside the package (``<site-packages>/mlcak_lib/data/``) is two levels up."""
    folder = manifest_path.resolve().parent
    return folder.parent.parent if folder == PACKAGED_MANIFEST.parent else folder


def read_manifest(path: str | os.PathLike | None = None) -> list[ManifestEntry]:
    """Parse the manifest into entries; raises ManifestError on a malformed file or access kind."""
    path = Path(path) if path is not None else default_manifest_path()
    if not path.is_file():
        raise ManifestError(f"manifest {path.name} not found at {path}")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(f"{path.name}: missing column(s) {', '.join(missing)}; expected {', '.join(COLUMNS)}")
        entries = []
        seen = set()
        for line, row in enumerate(reader, start=2):
            values = {c: (row.get(c) or "").strip() for c in COLUMNS}
            if not values["id"]:
                raise ManifestError(f"{path.name} line {line}: empty id")
            if values["id"] in seen:
                raise ManifestError(f"{path.name} line {line}: duplicate id {values['id']!r}")
            seen.add(values["id"])
            if values["access"] not in ACCESS_KINDS:
                raise ManifestError(
                    f"{path.name} line {line} ({values['id']}): unknown access kind {values['access']!r}; "
                    f"use one of {', '.join(ACCESS_KINDS)}"
                )
            try:
                size = int(values["bytes"]) if values["bytes"] else None
            except ValueError:
                raise ManifestError(f"{path.name} line {line} ({values['id']}): bytes must be an integer, got {values['bytes']!r}") from None
            if values["access"] in LOCAL_ACCESS and not (values["local_path"] and values["sha256"] and size is not None):
                raise ManifestError(
                    f"{path.name} line {line} ({values['id']}): a {values['access']} asset needs local_path, sha256 and bytes"
                )
            values["bytes"] = size
            entries.append(ManifestEntry(**values))
    return entries


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: str | os.PathLike, sha256: str | None, bytes: int | None, asset_id: str, fix: str | None = None) -> Path:
    """Check that ``path`` exists with the expected size and SHA-256; return it, or raise ManifestError.

    The message names the asset, what was expected and what was found, and ``fix`` (how to
    repair it) when given. Size is checked first (cheap), then the checksum.
    """
    path = Path(path)
    hint = f" To fix: {fix}." if fix else ""
    if not path.is_file():
        raise ManifestError(f"asset {asset_id!r} is missing: expected a file at {path}.{hint}")
    found_bytes = path.stat().st_size
    if bytes is not None and found_bytes != int(bytes):
        raise ManifestError(
            f"asset {asset_id!r} is corrupt or a different version: expected {int(bytes)} bytes, "
            f"found {found_bytes} bytes ({path.name}).{hint}"
        )
    if sha256:
        found = sha256_of(path)
        if found.lower() != sha256.lower():
            raise ManifestError(
                f"asset {asset_id!r} is corrupt or a different version: expected sha256 {sha256}, "
                f"found {found} ({path.name}).{hint}"
            )
    return path


def resolve_local_path(entry: ManifestEntry, manifest_path: str | os.PathLike | None = None) -> Path:
    """Where a local asset lives: ``pydicom-data:NAME`` via pydicom, else relative to the manifest's folder."""
    local = entry.local_path
    if local.startswith("pydicom-data:"):
        name = local.split(":", 1)[1]
        try:
            from pydicom.data import get_testdata_file
        except ImportError:  # pragma: no cover - pydicom is a core dependency
            raise ManifestError(f"asset {entry.id!r} needs pydicom: `pip install pydicom pydicom-data`") from None
        found = get_testdata_file(name)
        if found is None:
            raise ManifestError(
                f"asset {entry.id!r} ({name}) is missing: pydicom cannot find it in its test data. "
                "To fix: `pip install pydicom-data`."
            )
        return Path(found)
    base = _base_dir(Path(manifest_path)) if manifest_path is not None else _base_dir(default_manifest_path())
    path = Path(local)
    return path if path.is_absolute() else base / path


def _fix_for(entry: ManifestEntry, path: Path | None) -> str:
    package = next((p for prefix, p in _PYPI_PACKAGES.items() if entry.local_path.startswith(prefix + ":")), "the package named in `source`")
    shown = entry.local_path
    return _FIX.get(entry.access, "see the asset's `source` column").format(path=shown, package=package)


def _check_remote(entry: ManifestEntry, timeout: float = 10.0) -> AssetStatus:
    import urllib.request

    url = entry.source.split()[0] if entry.source.startswith("http") else ""
    if not url:
        return AssetStatus(entry.id, entry.access, "skipped", "no URL in source to check")
    try:
        request = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - user asked for it
            code = response.status
        return AssetStatus(entry.id, entry.access, "reachable", f"HTTP {code} from {url}")
    except Exception as exc:  # network errors must not crash a verification run
        return AssetStatus(entry.id, entry.access, "unreachable", f"{url}: {exc}")


def verify_manifest(
    path: str | os.PathLike | None = None,
    ids: Iterable[str] | None = None,
    check_remote: bool = False,
) -> list[AssetStatus]:
    """Verify every local asset (presence, size, SHA-256); skip credentialed/download ones.

    ``ids`` restricts the check to some assets. ``check_remote=True`` additionally sends an
    HTTP HEAD to the URL of each download/credentialed asset (reported, never a failure).
    Returns one :class:`AssetStatus` per asset; raises :class:`ManifestError` listing every
    missing or corrupt asset with how to fix it.
    """
    manifest_path = Path(path) if path is not None else default_manifest_path()
    entries = read_manifest(manifest_path)
    if ids is not None:
        wanted = list(ids)
        known = {e.id for e in entries}
        unknown = [i for i in wanted if i not in known]
        if unknown:
            raise ManifestError(f"unknown asset id(s) {', '.join(unknown)} in {manifest_path.name}; known: {', '.join(sorted(known))}")
        entries = [e for e in entries if e.id in wanted]
    results: list[AssetStatus] = []
    problems: list[str] = []
    for entry in entries:
        if not entry.is_local:
            if check_remote:
                results.append(_check_remote(entry))
            else:
                results.append(AssetStatus(entry.id, entry.access, "skipped", f"{entry.access}: not shipped with the course"))
            continue
        try:
            resolved = resolve_local_path(entry, manifest_path)
            verify_file(resolved, entry.sha256, entry.bytes, entry.id, fix=_fix_for(entry, resolved))
        except ManifestError as exc:
            problems.append(str(exc))
            continue
        results.append(AssetStatus(entry.id, entry.access, "ok", f"{entry.bytes} bytes, sha256 matches", resolved))
    if problems:
        raise ManifestError(f"{len(problems)} data asset(s) failed verification:\n- " + "\n- ".join(problems))
    return results


def write_manifest(entries: Iterable[ManifestEntry], path: str | os.PathLike) -> None:
    """Write entries as a plain CSV (header + one row each, ``\\n`` line endings, trailing newline)."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), lineterminator="\n")
        writer.writeheader()
        for entry in entries:
            row = asdict(entry)
            row["bytes"] = "" if row["bytes"] is None else str(row["bytes"])
            writer.writerow(row)


def upsert_entries(new: Iterable[ManifestEntry], path: str | os.PathLike | None = None) -> None:
    """Replace rows with the same id (in place) or append new ones; other rows are kept as they are."""
    path = Path(path) if path is not None else default_manifest_path()
    entries = read_manifest(path) if path.is_file() else []
    index = {e.id: i for i, e in enumerate(entries)}
    for entry in new:
        if entry.access not in ACCESS_KINDS:
            raise ManifestError(f"unknown access kind {entry.access!r} for {entry.id!r}; use one of {', '.join(ACCESS_KINDS)}")
        if entry.id in index:
            entries[index[entry.id]] = entry
        else:
            index[entry.id] = len(entries)
            entries.append(entry)
    write_manifest(entries, path)


def entry_for_file(path: str | os.PathLike, relative_to: str | os.PathLike, **columns) -> ManifestEntry:
    """A ManifestEntry for a file on disk: fills local_path (relative, POSIX), sha256 and bytes."""
    path = Path(path)
    values = {f.name: "" for f in fields(ManifestEntry)}
    values.update(columns)
    values["local_path"] = path.resolve().relative_to(Path(relative_to).resolve()).as_posix()
    values["sha256"] = sha256_of(path)
    values["bytes"] = path.stat().st_size
    return ManifestEntry(**values)
