"""Fault injection: bad input and diverging training fail clearly and lose nothing already saved."""
import hashlib

import pytest
import torch

from dil_causal.data import image_folder, load_images, read_image
from dil_causal.evaluate import evaluate
from dil_causal.models import load_model
from dil_causal.train import fit


def digest(p): return hashlib.sha256(p.read_bytes()).hexdigest()


def test_nan_loss_stops_and_keeps_the_checkpoint(tmp_path):
    "A run that diverges stops with an error naming the step; the saved model and checkpoint are untouched."
    good = fit(method="erm", steps=4, log_every=1, output_dir=str(tmp_path), progress=False)
    saved = ("model.safetensors", "checkpoint.safetensors")
    before = {n: digest(tmp_path / n) for n in saved}
    with pytest.raises(FloatingPointError, match=r"loss became (nan|inf) at step \d+"):
        # a new run replacing the old one (overwrite) at an absurd learning rate: it diverges before its first checkpoint
        fit(method="erm", steps=50, lr=1e12, log_every=1, ckpt_every=2, output_dir=str(tmp_path), progress=False,
            overwrite=True)
    assert {n: digest(tmp_path / n) for n in saved} == before
    model = load_model(good.checkpoint)
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("method", ["erm", "dil_sf"])
def test_unknown_names_are_reported(tmp_path, method):
    with pytest.raises(KeyError, match="known backbones"):
        fit(method=method, backbone="resnet", steps=1, output_dir=str(tmp_path))
    with pytest.raises(KeyError, match="known presets"):
        fit(method=method, confounders="snow", steps=1, output_dir=str(tmp_path))


def test_bad_image_files_name_the_file(tmp_path, shared_data):
    src = sorted((shared_data / "Set5").glob("*.png"))[0]
    data = src.read_bytes()
    (tmp_path / "truncated.png").write_bytes(data[: len(data) // 3])
    (tmp_path / "garbage.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    for name in ("truncated.png", "garbage.jpg"):
        with pytest.raises(ValueError, match=f"cannot read image .*{name}"):
            read_image(tmp_path / name)
    with pytest.raises(ValueError, match=r"cannot read image .*(garbage.jpg|truncated.png)"):
        image_folder(tmp_path)


def test_grayscale_set12_is_read_as_rgb(shared_data):
    imgs = image_folder(shared_data / "Set12")
    assert len(imgs) == 12 and all(x.shape[0] == 3 and torch.equal(x[0], x[1]) for x in imgs.values())


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no images"):
        load_images(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_images(str(tmp_path / "nope"))


def test_patch_larger_than_images(tmp_path, shared_data):
    with pytest.raises(ValueError, match=r"smaller than the patch size 512"):
        fit(data=str(shared_data / "Set5"), patch_size=512, steps=1, output_dir=str(tmp_path))


def test_trained_model_beats_noisy_input_on_cbsd68(tmp_path, shared_data):
    "A short ERM run of DnCNN-tiny on Set5 already restores real CBSD68 images better than the noisy input at sigma 15."
    res = fit(method="erm", backbone="dncnn-tiny", data=str(shared_data / "Set5"), steps=400, lr=1e-3, patch_size=32,
              progress=False, output_dir=str(tmp_path))
    test = dict(list(image_folder(shared_data / "CBSD68").items())[:3])
    test = {k: v[:, :128, :128] for k, v in test.items()}
    noisy = evaluate(None, test, "denoise", progress=False).query("degree == 15").psnr.mean()
    restored = evaluate(res.model, test, "denoise", progress=False).query("degree == 15").psnr.mean()
    assert restored > noisy + 1.0, (noisy, restored)
