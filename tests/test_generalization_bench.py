"""bench/generalization.py --quick: trains ERM and DIL_sf, evaluates at every budget, writes the CSV, table and plots."""
import json, re, sys

import pandas as pd

from conftest import ROOT, run

BENCH = ROOT / "bench" / "generalization.py"


def test_quick_writes_csv_table_plots_and_reports_again(tmp_path, shared_data):
    out = tmp_path / "out"
    r = run([sys.executable, str(BENCH), "--quick", "--out", str(out), "--work", str(tmp_path / "work")],
            env={"OMP_NUM_THREADS": "1", "DIL_DATA": str(shared_data)}, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gain_vs_budget.png", "meta.json", "psnr_vs_sigma.png",
                                                     "results.csv", "table.md"]
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == ["task", "method", "backbone", "pairing", "seed", "budget_passes", "passes",
                                "outer_steps", "dataset", "image", "degree", "seen", "psnr", "ssim", "psnr_y",
                                "ssim_y", "train_seconds"]
    # every method x budget x test set x image x degree, measured once
    assert set(df.method) == {"erm", "dil_sf"} and sorted(df.budget_passes.unique()) == [16, 32]
    assert set(df.dataset) == {"CBSD68", "Kodak24"} and df.groupby("dataset").image.nunique().tolist() == [2, 2]
    assert sorted(df.degree.unique()) == [5, 50] and set(df.seen) == {True, False}
    assert len(df) == 2 * 2 * 2 * 2 * 2 and not df.duplicated(["method", "budget_passes", "dataset", "image", "degree"]).any()
    # matched compute: ERM one pass per step, dil_sf one per seen noise level (4)
    steps = df.groupby("method").outer_steps.max()
    assert steps["erm"] == 32 and steps["dil_sf"] == 8 and (df.passes == df.budget_passes).all()
    # PSNR everywhere, the other metrics at the final budget only; all finite and sensible
    assert df.psnr.between(3, 60).all()
    final = df[df.budget_passes == 32]
    assert final[["ssim", "psnr_y", "ssim_y"]].notna().all().all() and df[df.budget_passes == 16].ssim.isna().all()
    # the table: a row per dataset x degree (unseen marked) and the paper's columns
    table = (out / "table.md").read_text()
    assert "| dataset | degree | ERM | DIL_sf | gain DIL_sf |" in table
    for ds in ("CBSD68", "Kodak24"):
        assert re.search(rf"^\| {ds} \| 5 \|", table, re.M) and re.search(rf"^\| {ds} \| 50 \*unseen\* \|", table, re.M)
    assert "mean unseen" in table and "seeds: erm 1, dil_sf 1" in table
    for png in ("psnr_vs_sigma.png", "gain_vs_budget.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / png).stat().st_size > 10_000
    meta = json.loads((out / "meta.json").read_text())
    assert meta["mode"] == "quick" and len(meta["runs"]) == 2 and meta["hardware"] and meta["commit"] != "?"
    # --report re-renders the table and plots from the CSV alone (several CSVs merge)
    again = tmp_path / "again"
    r = run([sys.executable, str(BENCH), "--report", str(out), str(out / "results.csv"), "--out", str(again)])
    assert r.returncode == 0, r.stderr[-3000:]
    assert (again / "table.md").read_text() == table
    assert len(pd.read_csv(again / "results.csv")) == len(df)
    assert all((again / p).stat().st_size > 10_000 for p in ("psnr_vs_sigma.png", "gain_vs_budget.png"))
    # ... but refuses sets that disagree: one measurement changed, or a setting that changes what the figures mean
    changed = tmp_path / "changed"; changed.mkdir()
    df.assign(psnr=df.psnr.where(df.index != 3, df.psnr + 0.5)).to_csv(changed / "results.csv", index=False)
    r = run([sys.executable, str(BENCH), "--report", str(out), str(changed), "--out", str(tmp_path / "x")])
    assert r.returncode != 0 and "1 measurements differ between the result sets" in r.stderr, r.stderr[-2000:]
    other = tmp_path / "other"; other.mkdir()
    df.to_csv(other / "results.csv", index=False)
    (other / "meta.json").write_text(json.dumps({**meta, "settings": {**meta["settings"], "patch": 48}}))
    r = run([sys.executable, str(BENCH), "--report", str(out), str(other), "--out", str(tmp_path / "y")])
    assert r.returncode != 0 and "differ in 'patch' (32 in" in r.stderr and "48 in" in r.stderr, r.stderr[-2000:]
    # the schedule is such a setting; a set written before --schedule existed ran at the constant default
    assert meta["settings"]["schedule"] == "constant"
    (other / "meta.json").write_text(json.dumps({**meta, "settings": {**meta["settings"], "schedule": "cosine"}}))
    r = run([sys.executable, str(BENCH), "--report", str(out), str(other), "--out", str(tmp_path / "z")])
    assert r.returncode != 0 and "differ in 'schedule'" in r.stderr, r.stderr[-2000:]
    older = {k: v for k, v in meta["settings"].items() if k != "schedule"}
    (other / "meta.json").write_text(json.dumps({**meta, "settings": older}))
    r = run([sys.executable, str(BENCH), "--report", str(out), str(other), "--out", str(tmp_path / "w")])
    assert r.returncode == 0, r.stderr[-2000:]


def test_unknown_pairing_and_dry_run(tmp_path, shared_data):
    env = {"DIL_DATA": str(shared_data)}
    r = run([sys.executable, str(BENCH), "--quick", "--pairings", "fast", "--out", str(tmp_path)], env=env)
    assert r.returncode != 0 and "known pairings: reference, unthrottled" in r.stderr
    r = run([sys.executable, str(BENCH), "--cpu", "--dry-run", "--out", str(tmp_path)], env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "18 runs" in r.stdout and "reference+unthrottled" in r.stdout and "min per run" in r.stdout


def test_lir_runs_beside_erm_on_its_own_network(tmp_path, shared_data):
    "LIR goes through the same bench: one generator update per pass, compared with ERM on the same (LIR) network."
    out = tmp_path / "lir"
    r = run([sys.executable, str(BENCH), "--quick", "--methods", "erm,lir", "--backbones", "lir-tiny", "--out", str(out),
             "--work", str(tmp_path / "work"), "--schedule", "cosine"],
            env={"OMP_NUM_THREADS": "1", "DIL_DATA": str(shared_data)}, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    # --schedule reaches fit: each run's config says cosine, and the rate of its last step has nearly decayed to 0
    for m in ("erm", "lir"):
        run_dir = tmp_path / "work" / f"denoise-{m}-lir-tiny-reference-s0"
        cfg = json.loads((run_dir / "config.json").read_text())
        assert cfg["schedule"] == "cosine"
        assert 0 < pd.read_csv(run_dir / "history.csv").lr.iloc[-1] < 0.01 * cfg["lr"]
    assert json.loads((out / "meta.json").read_text())["settings"]["schedule"] == "cosine"
    df = pd.read_csv(out / "results.csv")
    assert set(df.method) == {"erm", "lir"} and set(df.backbone) == {"lir-tiny"}
    assert df.groupby("method").outer_steps.max().to_dict() == {"erm": 32, "lir": 32} and df.psnr.between(3, 60).all()
    assert "| dataset | degree | ERM | LIR | gain LIR |" in (out / "table.md").read_text()
    r = run([sys.executable, str(BENCH), "--quick", "--methods", "lir", "--backbones", "rrdb-tiny", "--out", str(tmp_path / "x"),
             "--work", str(tmp_path / "w2")], env={"OMP_NUM_THREADS": "1", "DIL_DATA": str(shared_data)}, timeout=600)
    assert r.returncode != 0 and "pick an LIR backbone" in r.stdout + r.stderr


def test_ensemble_engine_writes_the_rows_of_the_process_engine(tmp_path, shared_data):
    "--engine ensemble (the default: fit_many + evaluate_members) and --engine process (fit per run) measure the same."
    frames = {}
    for engine in ("ensemble", "process"):
        out = tmp_path / engine
        r = run([sys.executable, str(BENCH), "--quick", "--seeds", "0,1", "--budgets", "8,16", "--engine", engine,
                 "--out", str(out), "--work", str(tmp_path / f"work-{engine}")],
                env={"OMP_NUM_THREADS": "1", "DIL_DATA": str(shared_data)}, timeout=600)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
        assert json.loads((out / "meta.json").read_text())["engine"] == engine
        frames[engine] = pd.read_csv(out / "results.csv")
    key = ["method", "seed", "budget_passes", "dataset", "image", "degree"]
    both = frames["ensemble"].merge(frames["process"], on=key, suffixes=("_e", "_p"))
    assert len(both) == len(frames["process"]) == 2 * 2 * 2 * 2 * 2 * 2
    assert (both.psnr_e - both.psnr_p).abs().max() < 1e-3 and (both.outer_steps_e == both.outer_steps_p).all()
