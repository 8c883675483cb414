"""PSNR/SSIM against scikit-image on real benchmark images (where the conventions coincide)."""
import numpy as np
import pytest
import skimage.metrics
import torch

from dil_causal.data import image_folder, tensor_to_uint8
from dil_causal.distortions import GaussianNoise
from dil_causal.metrics import calculate_psnr, calculate_ssim


@pytest.mark.parametrize("folder,n", [("CBSD68", 4), ("Kodak24", 2)])
def test_psnr_ssim_match_scikit_image(shared_data, folder, n):
    images = list(image_folder(shared_data / folder).values())[:n]
    for i, clean in enumerate(images):
        noisy = GaussianNoise(25)(clean[None], torch.Generator().manual_seed(i))[0]
        a, b = tensor_to_uint8(noisy), tensor_to_uint8(clean)
        for crop in (0, 4):
            sl = (slice(crop, -crop), slice(crop, -crop)) if crop else (slice(None), slice(None))
            ref_psnr = skimage.metrics.peak_signal_noise_ratio(b[sl], a[sl], data_range=255)
            ref_ssim = skimage.metrics.structural_similarity(b[sl], a[sl], channel_axis=2, gaussian_weights=True,
                                                             sigma=1.5, use_sample_covariance=False, data_range=255)
            assert abs(calculate_psnr(a, b, crop_border=crop) - ref_psnr) < 0.01
            assert abs(calculate_ssim(a, b, crop_border=crop) - ref_ssim) < 1e-4
