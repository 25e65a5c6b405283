"""mlcak_lib.dicom: tiny DICOMs written by the tests, plus pydicom-data's real RG1."""

from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import (  # noqa: E402
    JPEG2000Lossless,
    JPEGLSLossless,
    ExplicitVRLittleEndian,
    generate_uid,
)

from mlcak_lib.dicom import (  # noqa: E402
    NETWORK_MEAN,
    NETWORK_STD,
    DicomReadError,
    apply_window,
    normalize_for_network,
    read_dicom,
    rg1_path,
)

CR = "1.2.840.10008.5.1.4.1.1.1"


def _dataset(pixels: np.ndarray | None, photometric="MONOCHROME2", ts=ExplicitVRLittleEndian, **tags) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    ds.file_meta.MediaStorageSOPClassUID = CR
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = CR
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 1
    ds.Rows, ds.Columns = (8, 6) if pixels is None else pixels.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if pixels is not None:
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def _save(ds: Dataset, path: Path) -> Path:
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def ramp():
    return np.tile(np.arange(0, 4000, 500, dtype=np.uint16), (6, 1))  # 6 x 8, 0..3500


def test_monochrome2_full_range_and_tags(tmp_path, ramp):
    path = _save(_dataset(ramp, ViewPosition="PA", PatientSex="F"), tmp_path / "m2.dcm")
    image = read_dicom(path)
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (6, 8)
    assert image.pixels.min() == 0.0 and image.pixels.max() == 1.0
    assert np.all(np.diff(image.pixels[0]) > 0), "MONOCHROME2: larger stored value is brighter"
    assert image.raw.dtype == np.float32 and image.raw.max() == 3500
    assert image.photometric == "MONOCHROME2"
    assert image.tags["ViewPosition"] == "PA" and image.tags["PatientSex"] == "F"
    assert image.tags["Rows"] == 6 and image.tags["BitsStored"] == 12
    assert image.spacing_mm is None and image.spacing_source is None
    assert image.path == path


def test_monochrome1_is_inverted(tmp_path, ramp):
    m1 = read_dicom(_save(_dataset(ramp, "MONOCHROME1"), tmp_path / "m1.dcm"))
    m2 = read_dicom(_save(_dataset(ramp, "MONOCHROME2"), tmp_path / "m2.dcm"))
    np.testing.assert_allclose(m1.pixels, 1.0 - m2.pixels, atol=1e-6)
    np.testing.assert_array_equal(m1.raw, m2.raw)  # raw is before inversion
    assert np.all(np.diff(m1.pixels[0]) < 0)


def test_rescale_slope_intercept(tmp_path, ramp):
    ds = _dataset(ramp, RescaleSlope="2", RescaleIntercept="-1000")
    image = read_dicom(_save(ds, tmp_path / "r.dcm"), window=False)
    np.testing.assert_allclose(image.raw, ramp.astype(np.float32) * 2 - 1000)
    assert image.tags["RescaleSlope"] == 2.0 and image.tags["RescaleIntercept"] == -1000.0


def test_window_single_and_multi_valued(tmp_path, ramp):
    single = read_dicom(_save(_dataset(ramp, WindowCenter="1000", WindowWidth="1001"), tmp_path / "w1.dcm"))
    expected = apply_window(ramp.astype(np.float32), 1000, 1001)
    np.testing.assert_allclose(single.pixels, expected, atol=1e-6)
    assert single.pixels[0, 0] == 0.0 and single.pixels[0, -1] == 1.0  # 0 below, 3500 above the window
    multi = read_dicom(_save(_dataset(ramp, WindowCenter=["1000", "2500"], WindowWidth=["1001", "400"]), tmp_path / "w2.dcm"))
    np.testing.assert_allclose(multi.pixels, expected, atol=1e-6)  # the first window is the default
    assert multi.tags["WindowCenter"] == (1000.0, 2500.0)
    nowin = read_dicom(tmp_path / "w1.dcm", window=False)
    assert nowin.pixels.min() == 0.0 and nowin.pixels.max() == 1.0


def test_window_with_rescale_uses_modality_units(tmp_path, ramp):
    ds = _dataset(ramp, RescaleSlope="1", RescaleIntercept="-1000", WindowCenter="0", WindowWidth="2001")
    image = read_dicom(_save(ds, tmp_path / "wr.dcm"))
    np.testing.assert_allclose(image.pixels, apply_window(ramp - 1000.0, 0, 2001), atol=1e-6)


def test_voi_lut_sequence(tmp_path, ramp):
    item = Dataset()
    item.LUTDescriptor = [256, 0, 8]
    item.add_new(0x00283006, "US", list(range(256)))  # LUTData
    ds = _dataset(ramp // 16, VOILUTSequence=[item])  # stored 0..218 -> LUT identity
    image = read_dicom(_save(ds, tmp_path / "lut.dcm"))
    assert image.tags["HasVOILUTSequence"] is True
    np.testing.assert_allclose(image.pixels, (ramp // 16) / 255.0, atol=1e-6)


@pytest.mark.parametrize(
    "tags, spacing, source",
    [
        ({"ImagerPixelSpacing": ["0.15", "0.2"]}, (0.15, 0.2), "ImagerPixelSpacing"),
        ({"PixelSpacing": ["0.1", "0.1"], "ImagerPixelSpacing": ["0.15", "0.15"]}, (0.1, 0.1), "PixelSpacing"),
        ({"PixelSpacing": ["0", "0"], "ImagerPixelSpacing": ["0.15", "0.15"]}, (0.15, 0.15), "ImagerPixelSpacing"),
        ({"PixelSpacing": ["0", "0"]}, None, None),
    ],
)
def test_pixel_spacing(tmp_path, ramp, tags, spacing, source):
    image = read_dicom(_save(_dataset(ramp, **tags), tmp_path / "s.dcm"))
    assert image.spacing_mm == (pytest.approx(spacing) if spacing else None)
    assert image.spacing_source == source


def test_apply_window_and_normalisation():
    x = np.array([-10.0, 0.0, 10.0])
    np.testing.assert_allclose(apply_window(x, 0, 20, function="LINEAR_EXACT"), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(apply_window(x, 0, 20, invert=True, function="LINEAR_EXACT"), [1.0, 0.5, 0.0])
    assert apply_window(x, 0, 20, function="SIGMOID")[1] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        apply_window(x, 0, 20, function="CUBIC")
    assert (NETWORK_MEAN, NETWORK_STD) == (0.5, 0.25)
    np.testing.assert_allclose(normalize_for_network(np.array([0.0, 0.5, 1.0])), [-2.0, 0.0, 2.0])
    torch = pytest.importorskip("torch")
    assert torch.allclose(normalize_for_network(torch.tensor([0.0, 1.0])), torch.tensor([-2.0, 2.0]))


# ---- bad input -------------------------------------------------------------------------------
def test_text_file_is_not_dicom(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("this is not a radiograph\n" * 20)
    with pytest.raises(DicomReadError, match=r"notes\.txt: not a DICOM file"):
        read_dicom(path)


def test_missing_file(tmp_path):
    with pytest.raises(DicomReadError, match="no such file"):
        read_dicom(tmp_path / "absent.dcm")


def test_missing_pixel_data(tmp_path):
    path = _save(_dataset(None), tmp_path / "header_only.dcm")
    with pytest.raises(DicomReadError, match=r"header_only\.dcm: .*no pixel data"):
        read_dicom(path)


def test_rgb_is_rejected(tmp_path):
    ds = _dataset(None, photometric="RGB")
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.zeros((8, 6, 3), np.uint8).tobytes()
    path = _save(ds, tmp_path / "colour.dcm")
    with pytest.raises(DicomReadError, match=r"colour\.dcm: unsupported photometric interpretation 'RGB'"):
        read_dicom(path)


def _compressed(tmp_path, ts, name):
    ds = _dataset(None, ts=ts)
    ds.PixelData = encapsulate([b"\x00\x01not really compressed" * 4])
    ds["PixelData"].VR = "OB"
    return _save(ds, tmp_path / name)


def test_compressed_without_decoder(tmp_path):
    path = _compressed(tmp_path, JPEGLSLossless, "jls.dcm")  # no JPEG-LS plugin is a dependency
    with pytest.raises(DicomReadError, match=r"jls\.dcm: .*JPEG-LS Lossless.*no decoder for it is installed"):
        read_dicom(path)


def test_jpeg2000_with_bogus_data(tmp_path):
    # Depending on the machine there is no JPEG 2000 decoder (-> "no decoder") or there is one
    # (Pillow with OpenJPEG -> "could not decode"); either way the message names the file and syntax.
    path = _compressed(tmp_path, JPEG2000Lossless, "j2k.dcm")
    with pytest.raises(DicomReadError, match=r"j2k\.dcm: .*JPEG 2000") as info:
        read_dicom(path)
    assert "no decoder" in str(info.value) or "could not decode" in str(info.value)


def test_truncated_pixel_data(tmp_path, ramp):
    path = _save(_dataset(ramp), tmp_path / "full.dcm")
    data = path.read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) - 40])
    with pytest.raises(DicomReadError, match=r"cut\.dcm: .*(truncated|corrupt)"):
        read_dicom(cut)


# ---- the real radiograph ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rg1():
    return read_dicom(rg1_path())


def test_rg1_tags(rg1):
    assert rg1.pixels.shape == (1955, 1841) and rg1.raw.shape == (1955, 1841)
    assert rg1.photometric == "MONOCHROME1"
    assert rg1.tags["Modality"] == "CR" and rg1.tags["BitsStored"] == 15 and rg1.tags["ViewPosition"] == "PA"
    assert rg1.tags["WindowCenter"] == 15000.0 and rg1.tags["WindowWidth"] == 30000.0
    assert rg1.tags["PixelSpacing"] == (0.0, 0.0)  # present but zero: treated as unknown
    assert rg1.spacing_mm is None
    assert 0.0 <= rg1.pixels.min() < rg1.pixels.max() <= 1.0


def test_rg1_bone_is_bright(rg1):
    p = rg1.pixels
    h, w = p.shape
    rows = slice(int(0.30 * h), int(0.50 * h))
    right_lung = p[rows, int(0.20 * w) : int(0.35 * w)].mean()  # viewer's left
    left_lung = p[rows, int(0.65 * w) : int(0.80 * w)].mean()
    spine = p[rows, int(0.46 * w) : int(0.54 * w)].mean()
    corners = [p[:100, :100].mean(), p[:100, -100:].mean()]  # air above the shoulders
    assert right_lung < spine and left_lung < spine
    assert max(corners) < min(right_lung, left_lung)
