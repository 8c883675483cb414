"""LIR's public-code options: the networks' shapes, the code noise (in training, never at evaluation), the LSGAN targets,
one noise setting per model, the presets and their configs, and the GPU command's CPU smoke run."""
import copy, json, math, sys, warnings
from pathlib import Path

import pytest
import torch

from dil_causal.data import skimage_images
from dil_causal.lir import (LIR_PRESETS, LIROptions, UnpairedPatches, latent_confusion_loss, latent_d_loss, lir_data,
                            lir_setup, lir_step)
from dil_causal.models import build
from dil_causal.sampler import Confounder, ConfounderSampler
from dil_causal.train import TrainConfig, TrainState, fit

from conftest import ROOT, run

CPU = LIR_PRESETS["lir-official-cpu"]


def official_tiny():
    torch.manual_seed(0)
    return build(CPU["backbone"], **CPU["backbone_kwargs"])


def test_official_networks_shapes():
    "Both presets' networks: codes at H/4, a noise code as wide as the content code, images back at the input size."
    for name, p in LIR_PRESETS.items():
        m = build(p["backbone"], **p["backbone_kwargs"]).eval()
        x = torch.rand(2, 3, p["patch_size"], p["patch_size"])
        with torch.no_grad():
            out = m.translate(x, x.flip(-1))
            c = m.E_X.out_ch
            assert out["z_x"].shape == out["n_x"].shape == (2, c, p["patch_size"] // 4, p["patch_size"] // 4), name
            assert all(out[k].shape == x.shape for k in ("y_fake", "x_fake", "x_rec", "y_rec", "x_cyc", "y_cyc")), name
            assert out["x"].min() < 0 and type(m.G_Y.body[-1]).__name__ == "Tanh"   # tanh: the networks work in [-1, 1]
            assert len(m.D_X(out["x"])) == p["backbone_kwargs"].get("d_scales", 3 if name == "lir-official" else 2)
            y = m(torch.rand(1, 3, 37, 53))
            assert y.shape == (1, 3, 37, 53) and 0 <= y.min() and y.max() <= 1   # the restoration: any size, in [0, 1]
    assert build("lir", **LIR_PRESETS["lir-official"]["backbone_kwargs"]).E_XN.out_ch == 256


def state_for(m, cfg):
    from accelerate import Accelerator
    return TrainState(Accelerator(cpu=True), m, ConfounderSampler([Confounder(*c) for c in cfg.confounders]), cfg, lir_setup(cfg, m, torch.device("cpu")),
                      torch.Generator().manual_seed(0))


def batch(patch=32, n=4):
    from torch.utils.data import default_collate
    data = UnpairedPatches(skimage_images("train"), patch, n, seed=0)
    b = default_collate([data[i] for i in range(n)])
    b["noisy"] = (b["noisy"] + 25 / 255 * torch.randn(b["noisy"].shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    return b


def test_code_noise_in_training_not_at_evaluation():
    "The same step from the same weights: the generator's losses differ with code noise on; the restoration never noises."
    b = batch()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logs = {}
        for sigma in (0.0, 1.0):
            m = official_tiny()
            cfg = TrainConfig(**{**CPU, "lir": {"preset": "official", "code_noise": sigma}})
            logs[sigma] = {k: float(v) for k, v in lir_step(state_for(m, cfg), b).items()}
    assert logs[0.0]["g_latent"] == pytest.approx(logs[1.0]["g_latent"], rel=1e-5)   # same codes (the noise is after encoding) ...
    assert abs(logs[0.0]["g_recon"] - logs[1.0]["g_recon"]) > 1e-3                   # ... different decodings
    m = official_tiny().eval()
    x = b["noisy"]
    with torch.no_grad():
        a, again = m(x), m(x)
        clean = m.translate(x, b["clean"])["y_fake"]
    assert torch.equal(a, again) and torch.allclose(a, m.to_unit(clean), atol=1e-6)  # no noise in model(x)


def test_lsgan_targets():
    "D_R: noisy codes to 1, clean codes to 0; the encoders: both to 1/2."
    one, zero, half = torch.ones(3), torch.zeros(3), torch.full((3,), 0.5)
    assert latent_d_loss(one, zero, "lsgan") == 0 and latent_d_loss(zero, one, "lsgan") == 2
    assert latent_confusion_loss(half, half, "lsgan") == 0 and latent_confusion_loss(one, zero, "lsgan") == 0.5
    assert latent_confusion_loss(torch.zeros(3), torch.zeros(3)) == pytest.approx(math.log(2))   # bce's minimum


def test_lsgan_discriminator_learns_its_targets():
    "A few official steps on one batch: D_R's scores move towards 1 on noisy codes and 0 on clean ones."
    b = batch()
    m = official_tiny()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = state_for(m, TrainConfig(**{**CPU, "lr": 1e-3}))
    for _ in range(6): logs = lir_step(s, b)
    with torch.no_grad():
        m.eval()
        zx, zy = m.E_X(m.to_model(b["noisy"])), m.E_Y(m.to_model(b["clean"]))
        assert m.D_R(zx).mean() > m.D_R(zy).mean()


def test_one_noise_setting_per_model_by_default():
    "The default draws the noisy half from one confounder (and says so when there are several); 'pooled' mixes them."
    imgs = skimage_images("train")
    cfg = TrainConfig(method="lir", backbone="lir-tiny", patch_size=16, confounders="lir_denoise")
    with pytest.warns(UserWarning, match="one noise setting per model"):
        single = lir_data(cfg, imgs, ConfounderSampler("lir_denoise"), 64)
    plain = UnpairedPatches(imgs, 16, 64, seed=0)
    resid = [(single[i]["noisy"] - plain[i]["noisy"]).std().item() for i in range(64)]
    assert max(resid) < 0.11 and sorted(resid)[32] > 0.08   # all at sigma 25 (0.098, less where clipped), none at 50 (0.196)
    pooled = lir_data(TrainConfig(**{**vars(cfg), "lir": {"noise": "pooled"}}), imgs, ConfounderSampler("lir_denoise"), 64)
    assert max((pooled[i]["noisy"] - plain[i]["noisy"]).std().item() for i in range(64)) > 0.15


def test_configs_are_the_presets():
    for name, path in (("lir-official", "configs/lir_official.json"), ("lir-official-cpu", "configs/lir_official_cpu.json")):
        saved = TrainConfig.from_dict({k: v for k, v in json.loads((ROOT / path).read_text()).items() if not k.startswith("_")})
        preset = TrainConfig(**LIR_PRESETS[name])
        for k in LIR_PRESETS[name]: assert getattr(saved, k) == getattr(preset, k), (name, k)


def test_official_cpu_trains_and_resumes(tmp_path):
    "The CPU preset through `fit`, shortened: finite losses, 5 D_R updates a step, and a bit-identical resume."
    kw = dict(CPU, data="skimage", steps=4, batch_size=2, log_every=1, progress=False, cpu=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = fit(**kw, output_dir=str(tmp_path / "full"))
        fit(**kw, output_dir=str(tmp_path / "part"), stop_after=2)
        part = fit(**kw, output_dir=str(tmp_path / "part"), resume=True)
    assert all(math.isfinite(v) for v in full.history.loss)
    for (k, a), b in zip(full.model.state_dict().items(), part.model.state_dict().values()): assert torch.equal(a, b), k


def test_gpu_command_smoke_on_cpu(tmp_path, shared_data):
    "The one-command GPU run of the preset, with --tiny: same path, lir-tiny, 2 steps, 2 test images."
    out = tmp_path / "gpu"
    r = run([sys.executable, str(ROOT / "bench" / "lir_official_gpu.py"), "--tiny", "--out", str(out), "--work", str(tmp_path / "w")],
            env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert set(s["psnr"]) == {"25", "50"} and all(3 < v < 60 for v in s["psnr"].values()) and s["steps"] == 2
