"""Issue 19, restore and the command line: no overwritten inputs, clear one-line errors, the everyday options."""
import json, re

import pytest
import skimage.data
from PIL import Image

from conftest import run, venv_bin
from dil_causal.cli import main
from dil_causal.models import build, save_model
from dil_causal.restore import restore_file, restore_folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_model(build("dncnn-tiny"), tmp_path_factory.mktemp("m") / "model.safetensors", "dncnn-tiny", extra={"method": "erm"})


@pytest.fixture
def photos(tmp_path):
    d = tmp_path / "in"; d.mkdir()
    img = Image.fromarray(skimage.data.coffee()[:48, :64])
    img.save(d / "x.png"); img.save(d / "x.jpg", quality=95)
    return d


def error_line(capsys, argv, code=1):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_restore_never_overwrites_inputs(photos, ckpt):
    from dil_causal.models import load_model
    net, before = load_model(ckpt), {p.name: p.read_bytes() for p in photos.iterdir()}
    with pytest.raises(ValueError, match="is the input file itself"):
        restore_file(net, photos / "x.png", photos / "x.png", progress=False)
    with pytest.raises(ValueError, match="is the input folder"):
        restore_folder(net, photos, photos, progress=False)
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == before
    out = restore_folder(net, photos, photos.parent / "out", progress=False)
    assert [p.name for p in out] == ["x_jpg.png", "x_png.png"]


def test_restore_prints_what_it_wrote_and_bounds_the_tile(photos, ckpt, capsys, tmp_path):
    assert main(["restore", str(photos / "x.png"), str(tmp_path / "r.png"), "--checkpoint", str(ckpt), "--device", "cpu"]) == 0
    assert f"wrote {tmp_path / 'r.png'}" in capsys.readouterr().out
    err = error_line(capsys, ["restore", str(photos / "x.png"), str(tmp_path / "r.png"), "--checkpoint", str(ckpt), "--tile", "1"])
    assert "tile must be at least 16 pixels" in err
    assert "unknown device 'gpu7'" in error_line(capsys, ["restore", str(photos), str(tmp_path / "o"), "--checkpoint", str(ckpt), "--device", "gpu7"])
    assert "Permission denied: /sys/" in error_line(capsys, ["restore", str(photos / "x.png"), "/sys/dil-causal-test.png", "--checkpoint", str(ckpt)])


def test_config_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "latin1.json").write_bytes('{"_comment": "caf\xe9"}'.encode("latin-1"))
    assert "latin1.json is not UTF-8 text" in error_line(capsys, ["train", "--config", str(tmp_path / "latin1.json")])
    (tmp_path / "typo.json").write_text(json.dumps({"method": "erm", "stepz": 3}))
    assert "typo.json: unknown field(s) stepz" in error_line(capsys, ["train", "--config", str(tmp_path / "typo.json")])
    assert "config file" in error_line(capsys, ["train", "--config", str(tmp_path / "missing.json")])
    (tmp_path / "dir.json").mkdir()
    assert "dir.json" in error_line(capsys, ["train", "--config", str(tmp_path / "dir.json")])


def test_eval_file_limit_and_plot(ckpt, photos, tmp_path, capsys):
    assert "--limit must be 0 (all images) or a positive count, got -1" in error_line(capsys, ["eval", "--checkpoint", str(ckpt), "--limit", "-1"])
    plot = tmp_path / "psnr.png"
    assert main(["eval", "--checkpoint", str(ckpt), "--data", str(photos / "x.png"), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "(1 images)" in out and "input_psnr" in out and f"wrote {plot}" in out
    assert plot.read_bytes()[:4] == b"\x89PNG"


def test_version_and_data_help():
    r = run([venv_bin("dil-causal"), "--version"])
    assert r.returncode == 0 and re.fullmatch(r"dil-causal \d+\.\d+\.\d+\s*", r.stdout)
    r = run([venv_bin("dil-causal"), "data", "--help"])
    assert r.returncode == 0 and "~/.cache/dil_causal/data" in r.stdout and "Traceback" not in r.stderr


def test_data_prepare_and_positional_verify(tmp_path, capsys):
    hr = tmp_path / "DIV2K_train_HR"; hr.mkdir()
    Image.fromarray(skimage.data.astronaut()).save(hr / "0001.png")
    out = tmp_path / "datasets" / "DIV2K" / "train_HR_sub"
    assert main(["data", "prepare", "DIV2K", "--from", str(hr), "--output", str(out)]) == 0
    assert f"wrote 4 sub-images of 1 images to {out}" in capsys.readouterr().out
    assert main(["data", "verify", str(out)]) == 0 and "verified (4 files" in capsys.readouterr().out
    assert "already exists" in error_line(capsys, ["data", "prepare", "DIV2K", "--from", str(hr), "--output", str(out)])
    assert "needs --from DIR" in error_line(capsys, ["data", "prepare", "DF2K"])
