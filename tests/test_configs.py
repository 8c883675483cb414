"""Every file in configs/ is a valid TrainConfig, and the CPU-scale public-code twin trains through the CLI."""
import json
from pathlib import Path

import pytest

from conftest import ROOT, run, venv_bin
from dil_causal.train import TrainConfig

CONFIGS = sorted((ROOT / "configs").glob("*.json"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_is_valid(path: Path):
    fields = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    cfg = TrainConfig.from_dict(fields)
    assert cfg.output_dir.startswith("runs/") and json.loads(path.read_text())["_comment"]


def test_official_preset_is_the_public_code():
    "The public code's facts, as read from DIL_sf_noise.py: equal rates, (0, 0.999), fresh content per level, nb 23."
    cfg = TrainConfig.from_dict({k: v for k, v in json.loads((ROOT / "configs/denoise_official.json").read_text()).items()
                                 if not k.startswith("_")})
    assert (cfg.method, cfg.content, cfg.backbone, cfg.lr, cfg.inner_lr) == ("dil_sf", "independent", "rrdb", 1e-4, 1e-4)
    assert cfg.inner_betas == (0.0, 0.999) and cfg.schedule == "step" and cfg.milestones == (25 / 30,)
    assert (cfg.batch_size, cfg.patch_size, cfg.augment, cfg.schedule_inner) == (32, 64, True, False)
    twin = json.loads((ROOT / "configs/denoise_official_cpu.json").read_text())
    same = ("method", "content", "lr", "inner_lr", "inner_betas", "schedule", "milestones", "gamma", "schedule_inner")
    assert {k: twin[k] for k in same} == {k: json.loads((ROOT / "configs/denoise_official.json").read_text())[k] for k in same}


def test_official_cpu_twin_trains(tmp_path):
    "The CPU twin through `dil-causal train`, shortened: it validates at seen levels and keeps the best checkpoint."
    out = tmp_path / "run"
    r = run([venv_bin("dil-causal"), "train", "--config", str(ROOT / "configs/denoise_official_cpu.json"),
             "--set", f"steps=4,val_every=2,ckpt_every=2,log_every=1,progress=false,output_dir={out}"],
            env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [json.loads(l) for l in (out / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4] and rows[1]["val_psnr"] and rows[3]["val_psnr"]
    assert (out / "model_best.safetensors").exists() and (out / "model.safetensors").exists()
