"""dil_causal.study: a store that grows across invocations and machines. A run killed with SIGKILL in the middle of a
unit resumes to the same units and scores as an uninterrupted run (none trained twice, none lost); two shards merged
give the same store; the committed stores answer `status --json` and `report` with their committed numbers."""
import json, os, shutil, signal, subprocess, sys, time

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run, scores, venv_bin

STORES = {t: ROOT / "bench" / "results" / f"study-cpu-{t}" for t in ("denoise", "deblur")}
ENV = {"OMP_NUM_THREADS": "1"}


def cli(*args, timeout=900, env=None):
    return run([venv_bin("dil-causal"), "study", *map(str, args)], timeout=timeout, env={**ENV, **(env or {})})


@pytest.fixture
def uninterrupted(smoke_store):
    "The smoke study run once, start to end, through the command line (conftest's `smoke_store`, shared by the session)."
    return smoke_store


def test_sigkill_mid_unit_then_resume(uninterrupted, tmp_path):
    store, work = tmp_path / "store", tmp_path / "work"
    assert cli("plan", store, "--study", "smoke").returncode == 0
    args = [venv_bin("dil-causal"), "study", "run", str(store), "--jobs", "2", "--work", str(work)]
    p = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **ENV}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    # wait until some units are finished and another is half-way: a checkpoint in its work folder, no record yet
    deadline = time.time() + 600
    while time.time() < deadline:
        done = {f.stem for f in (store / "units").glob("*.json")}
        halfway = [d for d in work.glob("*") if (d / "checkpoint.safetensors").exists() and not any(n.endswith(d.name[:12]) for n in done)]
        if len(done) >= 5 and halfway: break
        time.sleep(0.2)
    os.killpg(p.pid, signal.SIGKILL)  # the whole run, workers included, as a crash or a preemption would
    p.wait()
    assert halfway, "no unit was caught half-way"
    before = {f.name: f.stat().st_mtime_ns for f in (store / "units").glob("*.json")}
    assert not any(n.endswith(halfway[0].name[:12] + ".json") for n in before)  # the interrupted unit left nothing
    assert all(json.loads((store / "units" / n).read_text())["curve"] for n in before)  # what is there is whole

    r = cli("run", store, "--jobs", 2, "--work", work)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"{14 - len(before)} units finished" in r.stdout  # none trained twice ...
    after = {f.name: f.stat().st_mtime_ns for f in (store / "units").glob("*.json")}
    assert all(after[n] == t for n, t in before.items())     # ... the finished ones untouched
    assert scores(store) == scores(uninterrupted)             # none lost, the same scores (the resumed unit bit-identical)
    assert _paired(cli("report", store).stdout) == _paired(cli("report", uninterrupted).stdout)  # the same answer table


def _paired(text: str) -> str:
    "The answer's paired table (the report's other sections hold timings, which differ between runs)."
    return text.split("## DIL − tuned ERM, paired by seed (equal passes)")[1].split("##")[0]


def test_two_shards_merge_into_one_store(uninterrupted, tmp_path):
    "Two machines each run their shard into their own store; the stores are copied together; repeat until done."
    merged = tmp_path / "merged"
    assert cli("plan", merged, "--study", "smoke").returncode == 0
    done = lambda: all(c["seeds_done"] == c["seeds_planned"] for c in map(json.loads, cli("status", merged, "--json").stdout.splitlines()))
    for round_ in range(6):  # a round per stage: sweep, refine, final and ladder
        before = len(list((merged / "units").glob("*.json")))
        for i in (0, 1):
            mine = tmp_path / f"machine{i}"
            shutil.rmtree(mine, ignore_errors=True); shutil.copytree(merged, mine)
            r = cli("run", mine, "--shard", f"{i}/2", "--jobs", 1, "--work", tmp_path / f"work{i}")
            assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
            for f in (mine / "units").glob("*.json"): shutil.copy(f, merged / "units" / f.name)  # merging is copying
        assert len(list((merged / "units").glob("*.json"))) > before, f"round {round_}: the shards trained nothing"
        if done(): break
    else: pytest.fail("the shards had not finished the smoke study after 6 rounds")
    assert scores(merged) == scores(uninterrupted)


@pytest.mark.parametrize("task", ["denoise", "deblur"])
def test_committed_stores_status_and_report(task):
    r = cli("status", STORES[task], "--json")
    assert r.returncode == 0, r.stderr
    cells = [json.loads(l) for l in r.stdout.splitlines()]
    keys = {"task", "backbone", "arm", "stage", "budget", "seeds_done", "seeds_planned", "flattened"}
    assert cells and all(set(c) == keys for c in cells)
    final = [c for c in cells if c["stage"] == "final"]
    assert {c["arm"] for c in final} == {"ERM", "DIL_sf shared", "DIL_sf independent"}
    assert all(c["seeds_done"] == c["seeds_planned"] == 5 and c["backbone"] == "rrdb-tiny" for c in final)
    assert {c["flattened"] for c in final} == ({False} if task == "denoise" else {None})  # ladder to 10,800 / one budget
    r = cli("report", STORES[task])
    assert r.returncode == 0 and r.stdout.strip() == (STORES[task] / "answer.md").read_text().strip()
    if task == "denoise":  # the decisive numbers of the CSV result set the store was imported from (commit 4c84b0e)
        assert "| DIL_sf independent | CBSD68 | unseen σ 30–50 | -0.27 ± 1.34 | +0.24, +0.21, +0.01, -2.18, +0.39 |" in r.stdout
        assert "| DIL_sf shared | CBSD68 | seen σ 5–20 | -1.82 ± 0.68 |" in r.stdout


def test_bad_input_named(tmp_path):
    r = cli("status", tmp_path / "nowhere")
    assert r.returncode == 1 and "not a study store" in r.stderr
    r = cli("plan", tmp_path / "s", "--study", "no-such-study")
    assert r.returncode == 1 and "no-such-study" in r.stderr and "cpu-denoise" in r.stderr
    assert cli("plan", tmp_path / "s", "--study", "smoke").returncode == 0
    r = cli("plan", tmp_path / "s", "--study", "cpu-denoise")
    assert r.returncode == 1 and "another study" in r.stderr
    r = cli("run", tmp_path / "s", "--shard", "2/2")
    assert r.returncode == 1 and "i/N" in r.stderr
    (tmp_path / "s" / "units" / "broken.json").write_text("{not json")
    r = cli("status", tmp_path / "s")
    assert r.returncode == 0 and "units/broken.json: damaged: not JSON" in r.stdout   # listed, never counted


def test_flattening_and_wall_time_tables():
    "The flattening table reads a curve's plateau and the budget ladder; the wall-time text turns time per pass into"
    " which way equal time would tip. On constructed records."
    from dil_causal import study as S
    st = S.Study(arms=("ERM", "DIL_sf shared"), ladder=(3,), seeds=(1, 2))
    passes = [600, 1200, 1800, 2400, 3000, 3600]
    erm = [20.0, 25.0, 27.0, 27.95, 28.0, 28.02]       # within 0.1 dB of 28.02 from 2,400 passes
    dil = [18.0, 20.0, 22.0, 24.0, 26.0, 28.0]         # still rising
    curves, units = [], []
    rates = {"ERM": dict(lr=3e-3, inner_lr=np.nan, factor=np.nan), "DIL_sf shared": dict(lr=np.nan, inner_lr=3e-4, factor=4.0)}
    for arm, curve, ms in (("ERM", erm, 10.0), ("DIL_sf shared", dil, 20.0)):
        for s in (1, 2):
            curves += [dict(stage="final", arm=arm, seed=s, name=f"{arm}-{s}", passes=p, val_psnr=v + 0.01 * s, **rates[arm]) for p, v in zip(passes, curve)]
            units.append(dict(stage="final", arm=arm, seed=s, passes=3600, train_seconds=36 * ms, ms_per_pass=ms))
    seed0 = lambda stage, arm, p, v, **r: dict(stage=stage, arm=arm, seed=0, name=f"{stage}-{arm}-{p}-{r}", passes=p, val_psnr=v, **{**rates[arm], **r})
    curves += [seed0("sweep", "ERM", 1200, 26.0), seed0("sweep", "ERM", 1200, 27.0, lr=1e-2),  # another rate: not on the ladder
               seed0("sweep", "DIL_sf shared", 1200, 21.0), seed0("refine", "ERM", 3600, 28.0),
               seed0("refine", "DIL_sf shared", 3600, 28.0), seed0("ladder", "ERM", 10800, 28.1)]
    selected = {"ERM": dict(rates={"lr": 3e-3}), "DIL_sf shared": dict(rates={"inner_lr": 3e-4, "factor": 4.0})}
    res = S.Results(st, pd.DataFrame(curves), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(units), selected, [], [])
    f = S.flattening(res).set_index("arm")
    assert f.loc["ERM", "flat_from"] == 2400 and f.loc["DIL_sf shared", "flat_from"] == 3600
    assert abs(f.loc["ERM", "last_third"] - (28.035 - 27.965)) < 1e-9 and abs(f.loc["DIL_sf shared", "last_third"] - 4.0) < 1e-9
    assert f.loc["ERM", "ladder"] == "1,200: 26.00 → 3,600: 28.00 → 10,800: 28.10" and f.loc["ERM", "flat_by"] == 3600  # +0.1 dB < 0.2
    assert pd.isna(f.loc["DIL_sf shared", "flat_by"]) and f.loc["DIL_sf shared", "longest"] == 3600
    assert "not by 3,600 passes" in S.flattening_text(res)
    text = S.wall_time_text(res)
    assert "ERM 10.0 ms" in text and "DIL_sf shared 20.0 ms" in text and "2.00× ERM's time per pass" in text and "upper bound" in text


def test_ensemble_engine_gives_the_process_engine_answer(uninterrupted, tmp_path):
    "The GPU path (engine \"ensemble\": each stage's units of an arm as one `fit_many` ensemble) on the CPU at smoke"
    " scale: the same units, and scores equal to the process engine's up to float rounding."
    from dataclasses import replace
    from dil_causal import study as S
    S.Store.create(tmp_path / "store", replace(S.STUDIES["smoke"], engine="ensemble"))
    r = run([sys.executable, "-c", f"from dil_causal import study as S; S.run({str(tmp_path / 'store')!r}, work={str(tmp_path / 'work')!r}, progress=False)"],
            env=ENV, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    ens, proc = S.results(tmp_path / "store"), S.results(uninterrupted)
    assert sorted(ens.units.name) == sorted(proc.units.name)                # the same units (keys), the same names
    key = ["arm", "seed", "dataset", "family", "degree", "weights"]
    a = ens.tests.sort_values(key).reset_index(drop=True)
    b = proc.tests.sort_values(key).reset_index(drop=True)
    assert len(a) == len(b) == 4 * 2 * 7 * 3
    np.testing.assert_allclose(a.psnr.values, b.psnr.values, atol=0.05)  # dB: members equal single runs up to rounding
