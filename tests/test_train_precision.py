"""Mixed precision through Accelerate: every method trains under bf16 autocast (on the CPU here), and the launcher's
setting reaches `fit` unless the configuration names one."""
import json, math, sys

from conftest import ROOT, run, venv_bin


def test_bf16_trains_every_method(tmp_path):
    # a fresh interpreter: Accelerate keeps one mixed-precision setting per process
    code = ("from dil_causal.train import fit, METHODS\n"
            "for m in METHODS:\n"
            f"    r = fit(method=m, backbone='lir-tiny' if m == 'lir' else 'rrdb-tiny', steps=3, log_every=1, "
            f"patch_size=16, batch_size=2, mixed_precision='bf16', output_dir=r'{tmp_path}/' + m, progress=False)\n"
            "    print(m, *r.history.loss.tolist())")
    r = run([sys.executable, "-c", code], env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [l.split() for l in r.stdout.splitlines() if l.split() and l.split()[0].startswith(("erm", "dil_", "lir"))]
    assert [l[0] for l in lines] == ["erm", "dil_sf", "dil_pf", "dil_ss", "dil_ps", "lir"]
    for l in lines:
        losses = [float(v) for v in l[1:]]
        # L1 losses of images in [0, 1] lie in (0, 1); LIR's is a weighted sum of its terms
        assert len(losses) == 3 and all(math.isfinite(v) and 0 < v < (100 if l[0] == "lir" else 1) for v in losses), l
        assert (tmp_path / l[0] / "model.safetensors").exists()


def test_launcher_precision_reaches_fit(tmp_path):
    "`accelerate launch --mixed_precision bf16` reaches the Accelerator; an explicit config value still wins."
    worker = str(ROOT / "tests" / "train_worker.py")
    small = dict(backbone="rrdb-tiny", method="erm", steps=1, patch_size=16, batch_size=2, progress=False)
    cfgs = {"default": dict(small, output_dir=str(tmp_path / "default")),
            "explicit": dict(small, output_dir=str(tmp_path / "explicit"), mixed_precision="no")}
    for name, cfg in cfgs.items(): (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
    for name in cfgs:  # one launch each: Accelerate keeps one precision per process
        r = run([venv_bin("accelerate"), "launch", "--cpu", "--num_processes", "1", "--num_machines", "1",
                 "--mixed_precision", "bf16", "--dynamo_backend", "no", worker, str(tmp_path / f"{name}.json")],
                env={"OMP_NUM_THREADS": "1"})
        assert r.returncode == 0, r.stderr[-3000:]
    used = {n: json.loads((tmp_path / n / "config.json").read_text())["mixed_precision"] for n in cfgs}
    assert used == {"default": "bf16", "explicit": "no"}, used
