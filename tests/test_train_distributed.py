"""Multi-process parity and kill-and-resume, with real processes (gloo ranks on CPU)."""
import json, os, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from accelerate.utils import set_seed
from safetensors.torch import load_file

from dil_causal.models import build

from conftest import ROOT, run, venv_bin

WORKER = str(ROOT / "tests" / "train_worker.py")
SMALL = dict(backbone="rrdb-tiny", backbone_kwargs={"nf": 8, "gc": 4}, patch_size=16, steps=3, lr=1e-3,
             inner_lr=1e-3, log_every=1, progress=False, seed=3)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0)); return s.getsockname()[1]


def write_cfg(path: Path, **cfg) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg)); return path


# every paired method, and every DIL variant with the public code's independent content too
RUNS = {m: dict(method=m) for m in ["erm", "dil_sf", "dil_pf", "dil_ss", "dil_ps"]} | \
       {f"{m}-independent": dict(method=m, content="independent") for m in ["dil_sf", "dil_pf", "dil_ss", "dil_ps"]}
METHODS = list(RUNS)


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    "Every method in one plain process with the global batch (4) of the multi-process runs; their output folder."
    tmp = tmp_path_factory.mktemp("one")
    cfgs = [write_cfg(tmp / f"{m}.json", **RUNS[m], batch_size=4, output_dir=str(tmp / m), **SMALL) for m in METHODS]
    r = run([sys.executable, WORKER, *map(str, cfgs)], env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp


def check_ranks(two: Path, one: Path):
    "Both ranks end with identical parameters, which equal the one-process run's and moved away from the init."
    set_seed(SMALL["seed"])  # fit's initialisation: training must have moved every run away from it
    init = build(SMALL["backbone"], **SMALL["backbone_kwargs"]).state_dict()
    for m in METHODS:
        rank0, rank1 = (load_file(str(two / m / f"rank{i}.safetensors")) for i in (0, 1))
        single = load_file(str(one / m / "rank0.safetensors"))
        assert max((single[k] - init[k]).abs().max().item() for k in single) > 1e-4, m
        for k in rank0:
            assert torch.equal(rank0[k], rank1[k]), f"{m}: ranks differ in {k}"
            torch.testing.assert_close(rank0[k], single[k], atol=1e-5, rtol=0, msg=f"{m}: 2 ranks vs 1 process, {k}")


def two_rank_configs(tmp_path: Path) -> list[Path]:
    return [write_cfg(tmp_path / f"two_{m}.json", **RUNS[m], batch_size=2, output_dir=str(tmp_path / "two" / m),
                      **SMALL) for m in METHODS]


LAUNCH = ["launch", "--multi_gpu", "--num_processes", "2", "--mixed_precision", "no", "--dynamo_backend", "no"]


def test_two_ranks_match_one_process(tmp_path, one_process):
    "accelerate launch --multi_gpu --num_processes 2 on CPU: ranks agree, and equal one process with the same global batch."
    cfgs = two_rank_configs(tmp_path)
    r = run([venv_bin("accelerate"), *LAUNCH, "--num_machines", "1", "--main_process_port", str(free_port()),
             WORKER, *map(str, cfgs)], env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    check_ranks(tmp_path / "two", one_process)


def test_two_nodes_match_one_process(tmp_path, one_process):
    "Two machines (two `accelerate launch`es with --num_machines 2 and their own --machine_rank, meeting at a TCP"
    " rendezvous on localhost), one process each: the multi-node path agrees with one process too."
    cfgs, port = two_rank_configs(tmp_path), str(free_port())
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    nodes = [subprocess.Popen([venv_bin("accelerate"), *LAUNCH, "--num_machines", "2", "--machine_rank", str(r),
                               "--main_process_ip", "127.0.0.1", "--main_process_port", port, WORKER, *map(str, cfgs)],
                              env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for r in (0, 1)]
    try:
        for r, node in enumerate(nodes):
            _, err = node.communicate(timeout=600)
            assert node.returncode == 0, f"node {r}: {err[-3000:]}"
    finally:  # a failed node leaves the other waiting at the rendezvous
        for node in nodes:
            if node.poll() is None: node.kill()
    for m in METHODS:  # each node's process saw the whole world: rank files 0 and 1 come from different launches
        hist = json.loads((tmp_path / "two" / m / "history.jsonl").read_text().splitlines()[-1])
        assert hist["step"] == SMALL["steps"], m
    check_ranks(tmp_path / "two", one_process)


def checkpoint_step(path: Path) -> int:
    try:
        with safe_open(str(path), framework="pt") as f: return json.loads(f.metadata()["train_state"])["step"]
    except Exception: return -1


@pytest.mark.parametrize("method", ["dil_ps"])  # first order resumes bit-identically in nbs/40_train too
def test_killed_run_resumes_bit_identical(tmp_path, method):
    "SIGKILL a training process after a checkpoint, resume it: the final parameters equal an uninterrupted run's."
    cfg = dict(SMALL, method=method, steps=16, ckpt_every=2, batch_size=2)
    whole = write_cfg(tmp_path / "whole.json", output_dir=str(tmp_path / "whole"), **cfg)
    killed = write_cfg(tmp_path / "killed.json", output_dir=str(tmp_path / "killed"), **cfg)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen([sys.executable, WORKER, str(killed)], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed" / "checkpoint.safetensors"
    deadline = time.time() + 300
    while checkpoint_step(ckpt) < 4 and proc.poll() is None and time.time() < deadline: time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed: make it longer"
    proc.send_signal(signal.SIGKILL); proc.wait()
    stopped_at = checkpoint_step(ckpt)
    assert 4 <= stopped_at < 16 and not (tmp_path / "killed" / "rank0.safetensors").exists()
    r = run([sys.executable, WORKER, str(killed), "--resume"], env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    r = run([sys.executable, WORKER, str(whole)], env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = (load_file(str(tmp_path / d / "rank0.safetensors")) for d in ("whole", "killed"))
    for k in a: assert torch.equal(a[k], b[k]), f"{method}: resumed run differs in {k} (killed at step {stopped_at})"
    hist = [json.loads(l) for l in (tmp_path / "killed" / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist] == list(range(1, 17))
