"""Issue 19's trainer items as a user meets them: two runs in one folder, a fresh run into a trained one, a
non-finite update, and nonsense settings — each an error that names the problem, with nothing saved lost."""
import json, os, subprocess, sys, time

import pytest

from conftest import ROOT, run, venv_bin
from dil_causal.cli import main
from dil_causal.files import read_history
from dil_causal.models import read_record

SMALL = dict(method="erm", backbone="rrdb-tiny", patch_size=16, batch_size=2, log_every=1, progress=False)


def write(path, **cfg):
    path.write_text(json.dumps(cfg)); return str(path)


def test_second_run_into_a_busy_folder_fails(tmp_path):
    "While a run writes, a second run into its folder (even with --overwrite) fails at once and writes nothing."
    out = tmp_path / "run"
    slow = write(tmp_path / "slow.json", **SMALL, steps=100_000, output_dir=str(out))
    first = subprocess.Popen([venv_bin("dil-causal"), "train", "--config", slow], cwd=ROOT, text=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"})
    try:
        deadline = time.time() + 120
        while not (out / "history.jsonl").exists() and time.time() < deadline: time.sleep(0.1)
        assert first.poll() is None, first.stderr.read()[-2000:]
        second = run([venv_bin("dil-causal"), "train", "--config", slow, "--overwrite"], env={"OMP_NUM_THREADS": "1"})
        assert second.returncode == 1 and "is in use by another run" in second.stderr, second.stderr[-1000:]
        assert first.poll() is None                                        # the first run goes on
    finally: first.kill(); first.wait()
    steps = [r["step"] for r in read_history(out / "history.jsonl")]     # (a kill may tear the last line)
    assert steps == list(range(1, len(steps) + 1))                        # one run's rows, none interleaved


def test_fresh_run_keeps_a_trained_model(tmp_path):
    out = tmp_path / "run"
    cfg = write(tmp_path / "c.json", **SMALL, steps=3, output_dir=str(out))
    assert run([venv_bin("dil-causal"), "train", "--config", cfg]).returncode == 0
    before = (out / "model.safetensors").read_bytes(), (out / "history.jsonl").read_bytes()
    r = run([venv_bin("dil-causal"), "train", "--config", cfg, "--set", "steps=0"])
    assert r.returncode == 1 and "steps must be >= 1" in r.stderr
    r = run([venv_bin("dil-causal"), "train", "--config", cfg])
    assert r.returncode == 1 and "already holds a run" in r.stderr and "--overwrite" in r.stderr
    assert ((out / "model.safetensors").read_bytes(), (out / "history.jsonl").read_bytes()) == before
    r = run([venv_bin("dil-causal"), "train", "--config", cfg, "--resume", "--set", "steps=5"])
    assert r.returncode == 0 and read_record(out / "model.safetensors")["steps"] == 5
    assert (out / "history.png").read_bytes()[:4] == b"\x89PNG"


def test_non_finite_update_is_not_saved(tmp_path, capsys):
    out = tmp_path / "run"
    cfg = write(tmp_path / "c.json", **SMALL, steps=1, lr=1e39, output_dir=str(out))
    assert main(["train", "--config", cfg]) == 1
    err = capsys.readouterr().err
    assert "weights became non-finite at step 1" in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists() and not (out / "checkpoint.safetensors").exists()


BAD = [({"grad_clip": -1.0}, "grad_clip must be >= 0"), ({"alpha": -0.5}, "alpha must be >= 0"),
       ({"steps": 0}, "steps must be >= 1"), ({"steps": True}, "steps must be int, got True"),
       ({"log_every": 0}, "log_every must be >= 1"), ({"log_every": -3}, "log_every must be >= 1"),
       ({"ckpt_every": -1}, "ckpt_every must be >= 0"), ({"patch_size": 0}, "patch_size must be >= 1"),
       ({"patch_size": "32"}, "patch_size must be int"), ({"lr": "fast"}, "lr must be float"),
       ({"lr": 0}, "lr must be > 0"), ({"batch_size": 2.5}, "batch_size must be int"),
       ({"method": "dil_xx"}, "unknown method 'dil_xx'"), ({"stpes": 3}, "unknown field(s) stpes"),
       ({"schedule": "linear"}, "schedule must be one of"), ({"ema_decay": 1.0}, "ema_decay < 1"),
       ({"content": "mixed"}, "content must be one of"), ({"data": ""}, "must name an image folder"),
       ({"val": 2.0}, "fraction must lie in (0, 1)"), ({"milestones": [1.5]}, "milestones are fractions")]


@pytest.mark.parametrize("bad,message", BAD, ids=[next(iter(b)) + "=" + str(next(iter(b.values()))) for b, _ in BAD])
def test_nonsense_settings_are_one_line_errors(tmp_path, capsys, bad, message):
    cfg = write(tmp_path / "c.json", **{**SMALL, "steps": 2, "output_dir": str(tmp_path / "run"), **bad})
    assert main(["train", "--config", cfg]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()                                  # nothing was started
