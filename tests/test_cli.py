"""The `dil-causal` command as a user runs it."""
import re

from conftest import run, venv_bin


def test_help_lists_commands():
    r = run([venv_bin("dil-causal"), "--help"])
    assert r.returncode == 0 and "demo" in r.stdout


def test_unknown_command_is_named():
    r = run([venv_bin("dil-causal"), "denoise-all-the-things"])
    assert r.returncode == 2 and "unknown command 'denoise-all-the-things'" in r.stderr


def test_demo_help_comes_from_docments():
    r = run([venv_bin("dil-causal"), "demo", "--help"])
    assert r.returncode == 0
    # argparse wraps the help to the terminal's width: compare with the line breaks taken out
    assert "DIL_sf outer steps; ERM gets the same number of forward/backward passes" in " ".join(r.stdout.split())


def test_demo_end_to_end(tmp_path):
    "A very short demo: the printed table has every sigma, the unseen rows, and the files it names exist."
    r = run([venv_bin("dil-causal"), "demo", "--steps", "3", "--output", str(tmp_path)])
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {int(m.group(1)): m.group(2) for m in re.finditer(r"^\s*(\d+)\s+(seen|unseen)\s", r.stdout, re.M)}
    assert rows == {5: "seen", 10: "seen", 15: "seen", 20: "seen", 30: "unseen", 40: "unseen", 50: "unseen"}
    assert "DIL_sf - ERM" in r.stdout
    png = tmp_path / "psnr_vs_sigma.png"
    assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and str(png) in r.stdout
    assert (tmp_path / "erm" / "model.safetensors").exists() and (tmp_path / "dil_sf" / "model.safetensors").exists()


def test_train_eval_restore_round_trip(tmp_path, shared_data):
    "train from a config file, evaluate the checkpoint on real images, restore a real image with tiles."
    import json
    from PIL import Image
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"_comment": "tiny", "method": "dil_pf", "steps": 4, "patch_size": 16,
                               "batch_size": 2, "progress": False, "output_dir": str(tmp_path / "run")}))
    r = run([venv_bin("dil-causal"), "train", "--config", str(cfg), "--set", "lr=0.001,log_every=2"])
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = tmp_path / "run" / "model.safetensors"
    assert str(ckpt) in r.stdout
    r = run([venv_bin("dil-causal"), "eval", "--checkpoint", str(ckpt), "--data", str(shared_data / "Set5"),
             "--limit", "2", "--output", str(tmp_path / "eval.csv")])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "protocol dil" in r.stdout and (tmp_path / "eval.csv").exists()
    assert {int(m) for m in re.findall(r"^\s*gaussian_noise\s+(\d+)", r.stdout, re.M)} == {5, 10, 15, 20, 30, 40, 50}
    src = shared_data / "Set5" / "bird.png"
    out = tmp_path / "bird_restored.png"
    r = run([venv_bin("dil-causal"), "restore", str(src), str(out), "--checkpoint", str(ckpt), "--tile", "96"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert Image.open(out).size == Image.open(src).size


def test_data_verify_and_bad_config(tmp_path, shared_data):
    r = run([venv_bin("dil-causal"), "data", "verify", "CBSD68", "--root", str(shared_data)])
    assert r.returncode == 0 and "CBSD68: verified" in r.stdout, r.stderr[-2000:]
    r = run([venv_bin("dil-causal"), "train", "--config", str(tmp_path / "missing.json")])
    assert r.returncode == 1 and "does not exist" in r.stderr
    (tmp_path / "bad.json").write_text('{"method": "dil_zz"}')
    r = run([venv_bin("dil-causal"), "train", "--config", str(tmp_path / "bad.json")])
    assert r.returncode == 1 and "unknown method 'dil_zz'" in r.stderr
