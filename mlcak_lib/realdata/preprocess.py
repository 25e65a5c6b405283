"""Convert a real dataset's images once into a compact cache (notebook 03).

    python -m mlcak_lib.realdata.preprocess --dataset vindr --root ~/data/vindr-cxr --sizes 224

Each image is decoded (DICOM: modality LUT, window, MONOCHROME1 inversion), padded/cropped to a
square and area-resized to each size, then stored as one small ``.npz`` (uint16 image + the
file's height/width + pixel spacing) under ``cache_dir()/<dataset>/...``; a 2500 px DICOM of
~10 MB becomes ~100 kB at 224. Writes are atomic (temporary file + rename), so an interrupted
run leaves no half-written entry, and a rerun **resumes**: images already converted are
skipped. An image that can not be read gets a ``.failed.txt`` marker with the reason; the
adapters then list it in ``dataset.skipped``. ``--retry-failed`` tries those again.
The adapters use the cache automatically whenever an entry exists.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass, field

from .common import atomic_write_bytes, failure_marker, write_cache_entry
from .errors import CorruptImageError, DataFormatError, DataQualityWarning, DatasetNotFoundError, EmptySplitError
from .folder import FolderDataset
from .vindr import VinDrCXRDataset

DATASETS: tuple[str, ...] = ("vindr", "folder")


@dataclass
class PreprocessReport:
    """Counts of one preprocessing run (``converted`` is 0 on a rerun: resume)."""

    converted: int = 0
    already_done: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    previously_failed: int = 0

    def summary(self) -> str:
        return (f"converted {self.converted}, already cached {self.already_done}, failed {len(self.failed)}"
                f"{f', previously failed {self.previously_failed}' if self.previously_failed else ''}")


def _make(dataset: str, split: str, root, size: int, square: str, **kw):
    if dataset == "vindr":
        return VinDrCXRDataset(split, (size,), root, image_size=size, square=square, **kw)
    return FolderDataset(split, (size,), root, image_size=size, square=square, **kw)


def preprocess(dataset: str, root=None, sizes=(224,), square: str = "pad", splits=("train", "val", "test"),
               retry_failed: bool = False, progress: bool = True, **kw) -> PreprocessReport:
    """Convert every image of ``splits`` at each of ``sizes``; return the counts (see module docstring)."""
    from tqdm.auto import tqdm

    if dataset not in DATASETS:
        raise ValueError(f"preprocess supports {', '.join(DATASETS)} (MedMNIST npz files need no conversion), got {dataset!r}")
    report = PreprocessReport()
    for size in sizes:
        for split in splits:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DataQualityWarning)
                try:
                    ds = _make(dataset, split, root, int(size), square, **kw)
                except EmptySplitError:
                    continue  # e.g. a split with no images, or all of them failed before
            if retry_failed:
                for rec in list(ds.records):
                    marker = failure_marker(ds._entry(rec))
                    if marker.exists():
                        marker.unlink()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DataQualityWarning)
                    ds = _make(dataset, split, root, int(size), square, **kw)
            else:
                report.previously_failed += sum(1 for _, r in ds.skipped if "image file missing" not in r)
            for rec in tqdm(ds.records, desc=f"{dataset} {split} {size}px", unit="img", disable=not progress):
                entry = ds._entry(rec)
                if entry.is_file():
                    report.already_done += 1
                    continue
                try:
                    image, file_hw, spacing = ds.convert(rec)
                except CorruptImageError as exc:
                    atomic_write_bytes(failure_marker(entry), str(exc).encode())
                    report.failed.append((rec.key, str(exc)))
                    continue
                write_cache_entry(entry, image, file_hw, spacing)
                report.converted += 1
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlcak_lib.realdata.preprocess", description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True, choices=DATASETS)
    parser.add_argument("--root", default=None, help="dataset folder (default: $MLCAK_DATA_ROOT)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224], help="square sizes to store (default 224)")
    parser.add_argument("--square", default="pad", choices=("pad", "crop", "stretch"))
    parser.add_argument("--splits", nargs="+", default=["train", "val", "test"])
    parser.add_argument("--retry-failed", action="store_true", help="try images that failed before again")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        rep = preprocess(args.dataset, args.root, args.sizes, args.square, tuple(args.splits),
                         args.retry_failed, not args.no_progress)
    except (DatasetNotFoundError, DataFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(rep.summary())
    for key, reason in rep.failed[:20]:
        print(f"  failed: {key}: {reason}")
    return 0 if not rep.failed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
