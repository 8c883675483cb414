"""The shipped, named models: listed, loaded through the safe path, restoring an image without training, and their
model cards' CBSD68 PSNR reproduced by `dil-causal eval -n NAME`."""
import json

import numpy as np
import pytest
import skimage.data
from PIL import Image

from conftest import run, venv_bin
from dil_causal.models import model_card, pretrained, pretrained_names, pretrained_path

PAIR = ["erm-denoise-tiny", "dil_sf-denoise-tiny"]   # seed 4 of ERM and DIL_sf, rrdb-tiny, σ 5-20 (study-cpu-denoise)
BIAS_FREE = "erm_bias_free-narrow-dncnn-tiny"         # ERM bias-free of the oracle study, DnCNN-tiny, σ 5 and 10 seen
DIL_RRDB = "dil_sf-narrow-rrdb-tiny"                  # DIL_sf of the oracle study on RRDB-tiny, σ 5 and 10 seen (cell 3)
NAMES = PAIR + [BIAS_FREE, DIL_RRDB]


def test_models_are_shipped_and_listed():
    assert pretrained_names() == sorted(NAMES)
    r = run([venv_bin("dil-causal"), "models"])
    assert r.returncode == 0 and all(n in r.stdout for n in NAMES) and "σ50" in r.stdout, r.stdout + r.stderr
    for n in NAMES:
        card = model_card(n)
        assert pretrained_path(n).stat().st_size < 2 * 2**20 and card["parameters"] < 500_000
        assert {"command", "commit", "hardware", "data", "fit_config", "psnr_cbsd68", "selection"} <= set(card)


def test_restore_by_name_without_training(tmp_path):
    noisy = np.clip(skimage.data.astronaut()[100:228, 150:278] / 255 + np.random.default_rng(0).normal(0, 15 / 255, (128, 128, 3)), 0, 1)
    Image.fromarray((noisy * 255).round().astype(np.uint8)).save(tmp_path / "noisy.png")
    r = run([venv_bin("dil-causal"), "restore", str(tmp_path / "noisy.png"), str(tmp_path / "out.png"), "-n", "dil_sf-denoise-tiny"])
    assert r.returncode == 0 and "wrote" in r.stdout, r.stderr[-2000:]
    clean = skimage.data.astronaut()[100:228, 150:278].astype(float)
    out = np.asarray(Image.open(tmp_path / "out.png"), float)
    psnr = lambda a: 10 * np.log10(255 ** 2 / np.mean((a - clean) ** 2))
    assert psnr(out) > psnr(noisy * 255) + 1, (psnr(out), psnr(noisy * 255))   # the shipped model denoises
    r = run([venv_bin("dil-causal"), "restore", str(tmp_path / "noisy.png"), str(tmp_path / "x.png"), "-n", "nope"])
    assert r.returncode == 1 and "unknown shipped model 'nope'" in r.stderr


def test_card_psnr_is_reproduced_by_eval(tmp_path, shared_data):
    """One card, the bias-free DnCNN-tiny's (written from its study store by bench/ship_models.py, whose PSNR is measured
    with eval's own code for every card), through the command its card gives (`eval_command`, the narrow task's preset):
    all 68 images at σ 75, a degree only that preset has. The RRDB-tiny pair takes 5x as long per image and runs the
    same code; one sigma stands for the card's six."""
    import shlex
    import pandas as pd
    name, out = "erm_bias_free-narrow-dncnn-tiny", tmp_path / "scores.csv"
    card = model_card(name)
    argv = shlex.split(card["eval_command"])
    assert argv[:4] == ["dil-causal", "eval", "-n", name] and argv[argv.index("--preset") + 1] == "denoise-narrow", argv
    argv[argv.index("--data") + 1] = str(shared_data / "CBSD68")
    r = run([venv_bin("dil-causal"), *argv[1:], "--metrics", "psnr", "--degrees", "75", "--output", str(out)],
            env={"OMP_NUM_THREADS": "1"}, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    df = pd.read_csv(out)
    mine = df[df.method != "input"].groupby("degree").psnr.mean()
    scores = {float(k): v for k, v in card["psnr_cbsd68"].items()}
    assert df.image.nunique() == 68 and set(mine.index) == {75.0} and len(df) == 2 * 68   # model and input rows
    for sigma in mine.index: assert abs(mine[sigma] - scores[sigma]) < 0.05, (sigma, mine[sigma], scores[sigma])
    for n in PAIR: assert "--preset" not in model_card(n)["eval_command"]  # the σ 5–20 pair: eval's default preset
    assert "--preset denoise-narrow" in model_card(DIL_RRDB)["eval_command"]  # the narrow task's, as the bias-free card's


def test_cards_state_the_seeds_standing_from_the_study():
    """Each card's `standing` (where the shipped seed sits among its arm's 5 seeds) is what the study's committed result
    store gives (final weights, CBSD68): recomputed here with bench/ship_models.standing, the one function that computes it."""
    import sys
    from conftest import ROOT
    sys.path.insert(0, str(ROOT / "bench"))
    from ship_models import standing
    for n in NAMES:
        card = model_card(n)
        s = card["standing"]
        assert s["seed"] == card["seed"] and s["source"]["arm"] == card["arm"]
        again = standing(ROOT / s["source"]["store"], s["source"]["arm"], s["seed"], s["source"]["dataset"])
        assert again["source"] == s["source"]
        for k in ("unseen", "seen"):
            assert again[k]["degrees"] == s[k]["degrees"] and again[k]["rank"] == s[k]["rank"]
            for v in ("seed_psnr", "arm_mean", "arm_ci95"): assert abs(again[k][v] - s[k][v]) < 1e-9, (n, k, v)
    for n in PAIR: assert model_card(n)["seed"] == 4 and model_card(n)["standing"]["source"]["seeds"] == [1, 2, 3, 4, 5]
    bf = model_card(BIAS_FREE)
    assert bf["standing"]["source"]["store"] == "bench/results/study-cpu-narrow-dncnn-tiny" and bf["standing"]["source"]["seeds"] == list(range(1, 11))
    assert bf["standing"]["unseen"]["degrees"] == [30, 40, 50, 75] and bf["standing"]["seen"]["degrees"] == bf["seen_sigmas"] == [5, 10]
    erm = model_card("erm-denoise-tiny")["standing"]["unseen"]
    assert erm["degrees"] == [30, 40, 50] and erm["seed_psnr"] > erm["arm_mean"] + erm["arm_ci95"]  # the lucky seed
    r = run([venv_bin("dil-causal"), "models"])
    assert "the shipped models illustrate, the studies decide" in r.stdout and "seed 4 of ERM (seeds 1, 2, 3, 4, 5)" in r.stdout, r.stdout
    assert f"{erm['seed_psnr']:.2f} dB against the arm's {erm['arm_mean']:.2f} ± {erm['arm_ci95']:.2f}" in r.stdout.replace("\n  ", " ")


def test_cards_digest_their_data_and_validation_split(shared_data):
    from dil_causal.data import data_digest, find_dataset, image_files
    from dil_causal.train import held_out
    for n in NAMES:
        card = model_card(n)
        folder = find_dataset(card["data"]["set"], shared_data)
        val = held_out([f.name for f in image_files(folder)], card["fit_config"]["val"])
        assert card["data"]["digest"] == data_digest(folder) and card["data"]["val"]["digest"] == data_digest(folder, val)
        assert card["data"]["val"]["images"] == len(val) == 22 and card["fit_config"]["data"] == "CBSD432"


def test_bias_free_model_has_no_bias_and_is_scale_equivariant():
    """The bias-free model (Mohan et al., 2020: no additive constant anywhere) is positively homogeneous,
    f(a·y) = a·f(y) for a > 0, to float tolerance on a real photo; the default-biased shipped pair is not."""
    import torch
    from torch import nn
    y = torch.from_numpy(skimage.data.astronaut()[100:228, 150:278] / 255).float().permute(2, 0, 1)[None]
    y = (y + 15 / 255 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)

    def error(net, a=2.0):   # a power of two: a·y and a·f(y) are exact in float32
        with torch.no_grad(): fy, fay = net(y).double(), net(a * y).double()
        return float((fay - a * fy).norm() / (a * fy).norm())

    net = pretrained(BIAS_FREE)
    card = model_card(BIAS_FREE)
    assert type(net).__name__ == "DnCNN" and card["backbone"] == "dncnn-tiny" and card["fit_config"]["backbone_kwargs"] == {"bias": False}
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.bias is None for m in convs) and not any(n.endswith("bias") for n, _ in net.named_parameters())
    assert error(net) < 1e-5, error(net)
    for n in PAIR:   # the shipped pair has biases: scaling the input does not scale the output
        assert any(m.bias is not None for m in pretrained(n).modules() if isinstance(m, nn.Conv2d))
        assert error(pretrained(n)) > 1e-3, (n, error(pretrained(n)))
