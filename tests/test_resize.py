import numpy as np
import pytest
import torch

from mlcak_lib.resize import area_resize, area_weights, center_crop_square, naive_subsample


@pytest.mark.parametrize("size_in,size_out", [(224, 28), (224, 56), (1841, 224), (100, 33)])
def test_mean_intensity_preserved(size_in, size_out):
    rng = np.random.default_rng(0)
    image = rng.random((size_in, size_in)).astype(np.float32)
    small = area_resize(image, size_out)
    assert small.shape == (size_out, size_out)
    assert small.mean() == pytest.approx(image.mean(), abs=1e-5)


def test_weights_rows_sum_to_one_and_reject_upsampling():
    w = area_weights(1955, 224)
    assert np.allclose(w.sum(axis=1), 1.0)
    with pytest.raises(ValueError, match="only downsamples"):
        area_weights(28, 224)


def test_fine_grating_does_not_alias():
    # A grating with a 7-pixel period is finer than the 8-pixel output pixel at 224 -> 28.
    x = np.arange(224)
    grating = np.tile((0.5 + 0.5 * np.sin(2 * np.pi * x / 7.0))[None, :], (224, 1)).astype(np.float32)
    area = area_resize(grating, 28)
    naive = naive_subsample(grating, 28)
    # Area averaging over 8 pixels keeps at most sin(8*pi/7) / (8 sin(pi/7)) = 1/8 of the
    # modulation (peak-to-peak 0.125); naive sampling turns it into a strong false pattern.
    assert np.ptp(area) < 0.13
    assert np.ptp(naive) > 0.8


def test_torch_matches_numpy_and_is_differentiable():
    image = torch.rand(2, 1, 64, 64, requires_grad=True)
    small = area_resize(image, (16, 8))
    assert small.shape == (2, 1, 16, 8)
    ref = area_resize(image.detach().numpy(), (16, 8))
    assert np.allclose(small.detach().numpy(), ref, atol=1e-6)
    small.sum().backward()
    assert image.grad is not None and torch.all(image.grad > 0)


def test_center_crop_square():
    a = np.zeros((10, 6))
    assert center_crop_square(a).shape == (6, 6)
