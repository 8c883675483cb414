"""Progress into a log file (#25 item 4): `dil-causal eval` and `dil-causal train` with their output redirected to a
file print a few plain progress lines, not one carriage-return update per image and degree or per step."""
import json, os, subprocess

from conftest import venv_bin


def _log(tmp_path, args, name):
    log = tmp_path / name
    with open(log, "w") as f:
        r = subprocess.run(args, stdout=f, stderr=f, cwd=tmp_path, text=True, timeout=900,
                                         env={**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"})
    return r, log.read_text()


def test_eval_into_a_log_file(tmp_path, shared_data):
    r, text = _log(tmp_path, [venv_bin("dil-causal"), "eval", "-n", "erm_bias_free-narrow-dncnn-tiny", "--data", "CBSD68", "--root", str(shared_data),
                              "--limit", "6", "--metrics", "psnr"], "eval.log")
    assert r.returncode == 0, text[-3000:]
    progress = [l for l in text.splitlines() if l.startswith("evaluate:")]
    assert "\r" not in text, f"{text.count(chr(13))} carriage returns in the log"
    assert 5 <= len(progress) <= 12, progress          # 6 images x 7 degrees: a line every 10 % and one at the end
    assert progress[-1].startswith("evaluate: 42/42 it (100 %)") and progress[-1].endswith("(done)")
    assert len(text.encode()) < 3000, len(text.encode())  # the table and ~10 short lines (tqdm wrote ~9 KB)


def test_train_into_a_log_file(tmp_path):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"method": "erm", "backbone": "dncnn-tiny", "steps": 40, "patch_size": 16, "batch_size": 2,
                               "log_every": 1, "output_dir": str(tmp_path / "run")}))
    r, text = _log(tmp_path, [venv_bin("dil-causal"), "train", "--config", str(cfg)], "train.log")
    assert r.returncode == 0, text[-3000:]
    progress = [l for l in text.splitlines() if l.startswith("ERM:")]
    assert "\r" not in text and 5 <= len(progress) <= 12, text
    assert progress[-1].startswith("ERM: 40/40 it (100 %)") and "loss=" in progress[-1], progress[-1]
