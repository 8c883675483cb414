"""LIR under `accelerate launch` with two real (gloo) CPU ranks: the step averages its gradients itself."""
import json, socket, sys
from pathlib import Path

import torch
from accelerate.utils import set_seed
from safetensors.torch import load_file

from dil_causal.models import build

from conftest import ROOT, run, venv_bin

WORKER = str(ROOT / "tests" / "train_worker.py")
SMALL = dict(method="lir", backbone="lir-tiny", confounders="lir_denoise", patch_size=16, steps=3, lr=1e-3,
             log_every=1, progress=False, seed=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def test_lir_two_ranks_match_one_process(tmp_path):
    "Ranks stay identical, and equal one process with the same global batch (the model is not DDP-wrapped)."
    two, one = tmp_path / "two.json", tmp_path / "one.json"
    two.write_text(json.dumps(dict(SMALL, batch_size=2, output_dir=str(tmp_path / "two"))))
    one.write_text(json.dumps(dict(SMALL, batch_size=4, output_dir=str(tmp_path / "one"))))
    r = run([venv_bin("accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
             "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port()),
             WORKER, str(two)], env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    r1 = run([sys.executable, WORKER, str(one)], env={"OMP_NUM_THREADS": "1"})
    assert r1.returncode == 0, r1.stderr[-3000:]
    set_seed(SMALL["seed"])
    init = build("lir-tiny").state_dict()
    rank0, rank1 = (load_file(str(tmp_path / "two" / f"rank{i}.safetensors")) for i in (0, 1))
    single = load_file(str(tmp_path / "one" / "rank0.safetensors"))
    for part in ("E_X.", "G_Y.", "D_X.", "D_R."):   # generators and discriminators all trained
        assert max((single[k] - init[k]).abs().max().item() for k in single if k.startswith(part)) > 1e-4, part
    for k in rank0:
        assert torch.equal(rank0[k], rank1[k]), f"ranks differ in {k}"
        torch.testing.assert_close(rank0[k], single[k], atol=1e-5, rtol=0, msg=f"2 ranks vs 1 process, {k}")
