"""Data and distortions as a training run uses them: DataLoader workers, seeds, devices, bad files."""
import pytest
import torch
from torch.utils.data import DataLoader

from dil_causal.data import PatchDataset, image_folder, load_dataset, read_image, skimage_images
from dil_causal.sampler import ConfounderSampler, PRESETS


def batches(ds, workers, batch_size=4):
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers)
    return torch.cat(list(loader))


def test_two_workers_give_the_same_items_as_none():
    ds = PatchDataset(skimage_images("train"), patch_size=32, length=24, seed=7)
    test = batches(ds, 0)
    assert torch.equal(test, batches(ds, 2))
    assert torch.equal(test[5], ds[5])


def test_patches_from_real_images_are_reproducible_per_seed(shared_data):
    imgs = image_folder(shared_data / "Set5")
    a, b = PatchDataset(imgs, 48, 16, seed=3), PatchDataset(imgs, 48, 16, seed=3)
    assert all(torch.equal(a[i], b[i]) for i in range(16))
    assert not torch.equal(a[0], PatchDataset(imgs, 48, 16, seed=4)[0])


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_sampler_is_deterministic_per_generator_and_keeps_the_clean_batch(preset, shared_data):
    clean = torch.stack(list(PatchDataset(load_dataset("Kodak24", shared_data, download=False), 32, 4, seed=0)))
    keep = clean.clone()
    s = ConfounderSampler(preset)
    a = s.counterfactual(clean, torch.Generator().manual_seed(0))
    b = s.counterfactual(clean, torch.Generator().manual_seed(0))
    assert len(a) == len(s) and all(torch.equal(x, y) for x, y in zip(a, b))
    assert torch.equal(clean, keep)
    assert torch.equal(s.pooled(clean, torch.Generator().manual_seed(1)), s.pooled(clean, torch.Generator().manual_seed(1)))


def test_cpu_generator_gives_the_same_distortion_for_any_image_device():
    "Randomness is drawn on the generator's device (CPU-only machines here: an explicit CPU generator equals the default)."
    x = torch.rand(2, 3, 16, 16)
    s = ConfounderSampler("cross_type")
    a = s.counterfactual(x, torch.Generator().manual_seed(0))
    b = s.counterfactual(x.clone(), torch.Generator("cpu").manual_seed(0))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_bad_files_name_themselves(tmp_path, shared_data):
    src = sorted((shared_data / "CBSD432_jpg").glob("*.jpg"))[0].read_bytes()
    (tmp_path / "cut.jpg").write_bytes(src[:200])
    (tmp_path / "empty.bmp").write_bytes(b"")
    for name in ("cut.jpg", "empty.bmp"):
        with pytest.raises(ValueError, match=f"cannot read image .*{name}"):
            read_image(tmp_path / name)


def test_small_images_are_named(shared_data):
    imgs = image_folder(shared_data / "Set5")
    with pytest.raises(ValueError, match=r"image \S+\.png is \d+x\d+, smaller than the patch size 1024"):
        PatchDataset(imgs, 1024, 4)
