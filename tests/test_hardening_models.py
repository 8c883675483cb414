"""Issue 19, model-file side: crafted model files, optimiser state, durable writes, output folders, torn history."""
import json, os, signal, stat, subprocess, sys, time, warnings

import pytest
import torch
from safetensors.torch import save_file

from dil_causal.files import read_history, remove_stale_temps, run_folder
from dil_causal.models import build, check_optimizer_state, load_model, load_tensors, save_file_atomic, save_model, tensor_specs


def record(backbone, **overrides): return {"dil_causal": json.dumps({"backbone": backbone, "overrides": overrides})}


def test_huge_record_is_refused_before_allocating(tmp_path):
    "A small file whose record claims a huge RRDB is refused without allocating it (peak memory measured in a child)."
    tensors = {k: v.contiguous() for k, v in build("rrdb-tiny").state_dict().items()}
    crafted = save_file_atomic(tensors, tmp_path / "m.safetensors", record("rrdb", nf=1500))
    code = ("import resource, sys\nfrom dil_causal.models import load_model\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            f"try: load_model({str(crafted)!r})\nexcept ValueError as e: print('refused:', e)\n"
            "print('grew_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "refused:" in r.stdout and "do not fit backbone 'rrdb' with overrides {'nf': 1500}" in r.stdout, r.stdout + r.stderr
    grew_mb = int(r.stdout.split("grew_kb")[1]) / 1024
    assert grew_mb < 150, f"loading the crafted file grew the process by {grew_mb:.0f} MB"


def test_model_file_without_digest_is_refused_unless_asked(tmp_path):
    net = build("dncnn-tiny")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "m.safetensors"),
              metadata=record("dncnn-tiny"))
    with pytest.raises(ValueError, match="carries no SHA-256"):
        load_model(tmp_path / "m.safetensors")
    assert sum(p.numel() for p in load_model(tmp_path / "m.safetensors", allow_undigested=True).parameters()) > 0


def test_nan_weights_are_refused(tmp_path):
    net = build("dncnn-tiny")
    with torch.no_grad(): net.tail.weight[0, 0, 0, 0] = float("nan")
    save_model(net, tmp_path / "m.safetensors", "dncnn-tiny")
    with pytest.raises(ValueError, match="non-finite"):
        load_model(tmp_path / "m.safetensors")


def test_every_tensor_is_checked_against_the_built_model(tmp_path):
    net = build("dncnn-tiny")
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    sd["tail.bias"] = torch.zeros(3, dtype=torch.float64)                 # right shape, wrong dtype
    save_file_atomic(sd, tmp_path / "m.safetensors", record("dncnn-tiny"))
    with pytest.raises(ValueError, match="tail.bias is \\(3,\\) F64, expected \\(3,\\) F32"):
        load_model(tmp_path / "m.safetensors")
    sd = {k: v.contiguous() for k, v in net.state_dict().items()}
    sd["extra"] = torch.zeros(1)
    save_file_atomic(sd, tmp_path / "e.safetensors", record("dncnn-tiny"))
    with pytest.raises(ValueError, match="unexpected extra"):
        load_model(tmp_path / "e.safetensors")


def test_crafted_optimizer_state_is_caught_before_loading():
    "The saved Adam moments must have their parameters' shapes (fused Adam would write out of bounds otherwise)."
    net = build("dncnn-tiny")
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.rand(1, 3, 8, 8)).mean().backward(); opt.step()
    sd = opt.state_dict()
    check_optimizer_state(sd, opt)
    for k, bad in (("exp_avg", torch.zeros(7)), ("exp_avg_sq", torch.zeros(16, 3, 3, 4)), ("step", torch.zeros(2))):
        crafted = {"state": {**sd["state"], 0: {**sd["state"][0], k: bad}}, "param_groups": sd["param_groups"]}
        with pytest.raises(ValueError, match=f"ckpt: {k} of parameter 0"):
            check_optimizer_state(crafted, opt, "ckpt")
    with pytest.raises(ValueError, match="parameter groups do not match"):
        check_optimizer_state({"state": {}, "param_groups": [{"params": [0, 1]}]}, opt)


def test_training_style_files_get_a_digest_and_partial_checks(tmp_path):
    "A checkpoint-like file (model.* plus opt.*): the model part is checked by shape, the whole by its SHA-256."
    net = build("dncnn-tiny")
    tensors = {f"model.{k}": v.contiguous() for k, v in net.state_dict().items()} | {"opt.0.exp_avg": torch.zeros(3)}
    path = save_file_atomic(tensors, tmp_path / "checkpoint.safetensors", {"train_state": "{}"})
    expected = {f"model.{k}": s for k, s in tensor_specs(net).items()}
    meta, back = load_tensors(path, expected, exact=False)
    assert meta["train_state"] == "{}" and set(back) == set(tensors)
    raw = bytearray(path.read_bytes()); raw[-1] ^= 1; path.write_bytes(raw)
    with pytest.raises(ValueError, match="modified or corrupted"):
        load_tensors(path, expected, exact=False)


def test_written_files_have_the_usual_mode(tmp_path):
    old = os.umask(0o022)
    try: p = save_model(build("dncnn-tiny"), tmp_path / "m.safetensors", "dncnn-tiny")
    finally: os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_temp_file_of_a_killed_writer_is_removed(tmp_path):
    "kill -9 in the middle of a write leaves a hidden temp file; the next write into the folder removes it."
    code = ("import time\nfrom dil_causal.files import atomic_write\n"
            "def slow(t): t.write_bytes(b'x' * 1000); time.sleep(60)\n"
            f"atomic_write({str(tmp_path / 'model.safetensors')!r}, slow)")
    p = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(300):
        if list(tmp_path.glob(".*.tmp")): break
        time.sleep(0.1)
    p.send_signal(signal.SIGKILL); p.wait()
    assert [f.name for f in tmp_path.glob(".*.tmp")] == [f".model.safetensors.{p.pid}.tmp"]
    save_model(build("dncnn-tiny"), tmp_path / "model.safetensors", "dncnn-tiny")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["model.safetensors"]
    assert remove_stale_temps(tmp_path) == []


def test_two_runs_cannot_share_a_folder_and_a_fresh_run_does_not_clobber(tmp_path):
    code = f"import time\nfrom dil_causal.files import run_folder\nwith run_folder({str(tmp_path)!r}):\n    print('in', flush=True); time.sleep(60)"
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "in"
        with pytest.raises(FileExistsError, match=f"in use by another run \\(process {p.pid}\\)"):
            with run_folder(tmp_path, resume=True): pass
    finally: p.kill(); p.wait()
    (tmp_path / "model.safetensors").write_bytes(b"trained")
    with pytest.raises(FileExistsError, match="already holds a run \\(model.safetensors\\).*--overwrite"):
        with run_folder(tmp_path): pass
    with run_folder(tmp_path, resume=True): pass                 # the lock died with its process
    assert (tmp_path / "model.safetensors").read_bytes() == b"trained"


def test_torn_last_history_line(tmp_path):
    h = tmp_path / "history.jsonl"
    h.write_text("".join(json.dumps({"step": i, "loss": 1.0 / i}) + "\n" for i in range(1, 4)) + '{"step": 4, "lo')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        rows = read_history(h, repair=True)
    assert [r["step"] for r in rows] == [1, 2, 3] and str(h) in str(w[0].message)
    with open(h, "a") as f: f.write(json.dumps({"step": 4}) + "\n")
    assert [r["step"] for r in read_history(h)] == [1, 2, 3, 4]
