"""The decisive study: does DIL beat a *tuned* ERM on unseen distortions?

Protocol (one command per part, or `all`):
  sweep   every method at every rate of its grid, one seed (0), a decaying (cosine) schedule and EMA, validated every
          so often at the SEEN degrees on held-out training images (a fixed 5 % of CBSD432, never a test image);
  select  per method, the rate with the best final seen-degree validation PSNR (`selected.json`); never an unseen
          degree or a test image;
  refine  when the final budget is longer than the sweep's: the sweep's 3 best settings per method again at the final
          budget (seed 0), and the selection made there (a rate that is best over a short run can diverge over a
          long one: DIL_sf independent's sweep pick, inner 3e-3 x 4, did in 2 of 3 seeds at 3,600 passes);
  final   the selected configurations again with fresh seeds (1..5), their validation curves, and the test sets at
          every degree, seen and unseen;
  best    (process engine) each final run's best seen-validation checkpoint on the test sets as well;
  ladder  (process engine, with a refine stage) the selected settings, seed 0, at 3 x the final budget: with the sweep and
          refine runs of the same settings, a budget ladder that says where validation flattened;
  answer  DIL - ERM (both tuned) per dataset on unseen and on seen degrees, paired by seed: mean, 95 % t-interval and
          every seed's value, at equal passes and at equal wall time (`answer.md`, `curves.png`).

Methods: ERM; DIL_sf with content "shared" (one clean batch under every noise level) and "independent" (a fresh clean
batch per level, the public code's). Grids (ours, log steps of about 3x, wide enough that every method's best lies
inside): ERM lr in {1e-4, 3e-4, 1e-3, 3e-3, 1e-2}; DIL_sf inner lr in {1e-4, 3e-4, 1e-3, 3e-3, 1e-2} x meta-rate factor in
{1 (the public code's pairing: meta = inner), 4 (= n, "unthrottled")}. Every method gets
the same budget in forward/backward passes. EMA decay is set per method so that its horizon is the same number of
passes (300 at CPU scale, 2,000 at GPU scale): decay = 1 - passes_per_step / horizon, ramped up from the start as
fit's ema_warmup does (min(decay, (1 + t) / (10 + t)) at update t), so that the average forgets the random initial
weights. All of these are our settings, not the public code's
(which trains 110k outer steps of a 16.6 M RRDB at 1e-4 and selects nothing).

Scales:
  cpu   rrdb-tiny, patch 32, batch 8, 1,200 passes per sweep run and 3,600 per final run (EMA horizon 300 passes;
        --final-passes to change); --task denoise (sigma 5-20 seen,
        30/40/50 unseen; 12 seeded 192-px centre crops of CBSD68 and Kodak24) or deblur (blur sigma 1-4 seen, 4.2-5.0
        unseen; Set5 and Set14 centre-cropped); trained run by run (--engine process, --jobs 2): on these 2-core
        machines the vectorised ensemble measured slower than single runs (bench/README.md).
  gpu   rrdb-small, the same grids, a 5,000-pass sweep and 30,000 passes per final run, every group of runs trained
        as one vectorised ensemble (fit_many) in bf16; data from a bundle (`bench/make_bundle.py`); sized for one
        9-minute command on one H100/H200 (`--time-limit`).
  smoke the gpu protocol (vectorised ensembles) shrunk to seconds on the CPU, 40 training images (tests/test_study.py).

Usage:
  python bench/study.py all --scale cpu --out bench/results/study-cpu-denoise --jobs 2
  python bench/study.py all --scale gpu --data bundle --out results/study-gpu-denoise --time-limit 480
  python bench/study.py answer --out bench/results/study-cpu-denoise       # re-render from the CSVs
"""
from __future__ import annotations

import argparse, json, math, os, platform, subprocess, sys, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASKS = {"denoise": dict(preset="denoise", tests=("CBSD68", "Kodak24"), seen="σ 5–20", unseen="σ 30–50"),
         "deblur": dict(preset="deblur", tests=("Set5", "Set14"), seen="blur σ 1–4", unseen="blur σ 4.2–5.0")}
SCALES = {
    "cpu": dict(backbone="rrdb-tiny", patch=32, batch=8, sweep_passes=1200, final_passes=3600, val_points=12,
                ema_passes=300, eval_images=12, eval_crop=192, seeds=(1, 2, 3, 4, 5), engine="process", bf16=False),
    "gpu": dict(backbone="rrdb-small", patch=32, batch=8, sweep_passes=5000, final_passes=30000, val_points=10,
                ema_passes=2000, eval_images=12, eval_crop=192, seeds=(1, 2, 3, 4, 5), engine="ensemble", bf16=True),
    "smoke": dict(backbone="rrdb-tiny", patch=16, batch=2, sweep_passes=16, final_passes=24, val_points=2,
                  ema_passes=8, eval_images=1, eval_crop=48, seeds=(1, 2), engine="ensemble", bf16=False, train_images=40),
}
GRIDS = {"erm": [dict(lr=r) for r in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)],
         "dil_sf": [dict(inner_lr=r, factor=f) for r in (1e-4, 3e-4, 1e-3, 3e-3, 1e-2) for f in (1, 4)]}
ARMS = {"ERM": ("erm", None), "DIL_sf shared": ("dil_sf", "shared"), "DIL_sf independent": ("dil_sf", "independent")}
REFINE_TOP = 3  # settings per method that the refine stage trains at the final budget
LADDER = 3      # the ladder part trains each selected setting (seed 0) for LADDER x the final budget ...
FLAT_DB = 0.2   # ... and validation has flattened at a budget whose tripling gained less than this (dB)
N_SEEN = 4  # seen degrees of both tasks' presets: DIL_sf makes 4 passes per outer step


def passes_per_step(arm: str) -> int:
    "Forward/backward passes per outer step of an arm's method, from its `Method` record (DIL_sf: one per seen degree)."
    from dil_causal.train import METHODS
    return METHODS[ARMS[arm][0]].passes(N_SEEN)


def last_points(curves: pd.DataFrame) -> pd.DataFrame:
    "Each run's last validation point (its final seen-degree validation PSNR)."
    return curves.sort_values("passes").groupby("name").tail(1)


def read_selected(out: Path) -> dict:
    return json.loads((out / "selected.json").read_text())


def data_root() -> Path:
    return Path(os.environ.get("DIL_DATA") or ROOT.parent / "shared" / "data")


def run_config(arm: str, rates: dict, seed: int, passes: int, sc: dict, work: Path, train: str, name: str,
               task: str = "denoise") -> dict:
    "The TrainConfig fields of one run of the study."
    method, content = ARMS[arm]
    pps = passes_per_step(arm)
    steps = passes // pps
    lr = rates["lr"] if method == "erm" else rates["inner_lr"] * rates["factor"]
    extra = {} if method == "erm" else dict(inner_lr=rates["inner_lr"], inner_betas=(0.0, 0.999), content=content)
    return dict(method=method, backbone=sc["backbone"], confounders=TASKS[task]["preset"], data=train, patch_size=sc["patch"],
                batch_size=sc["batch"], steps=steps, lr=lr, schedule="cosine", ema_decay=1 - pps / sc["ema_passes"],
                val=0.05, val_every=max(1, steps // sc["val_points"]), val_crop=96, seed=seed, log_every=max(1, steps // sc["val_points"]),
                output_dir=str(work / name), progress=False, mixed_precision="bf16" if sc["bf16"] else "no", **extra)


def plan(part: str, sc: dict, work: Path, train: str, selected: dict|None = None, task: str = "denoise") -> list[dict]:
    "The runs of a part: (arm, rates, seed, config) dicts."
    runs = []
    for arm, (method, _) in ARMS.items():
        grid = {"sweep": lambda: GRIDS[method], "refine": lambda: selected[arm]["candidates"],
                "final": lambda: [rates_of(selected[arm])], "ladder": lambda: [rates_of(selected[arm])]}[part]()
        seeds = sc["seeds"] if part == "final" else (0,)
        passes = {"sweep": sc["sweep_passes"], "ladder": LADDER * sc["final_passes"]}.get(part, sc["final_passes"])
        for rates in grid:
            for seed in seeds:
                tag = "-".join(f"{k}{v:g}" for k, v in rates.items())
                name = f"{part}-{arm.replace(' ', '_')}-{tag}-s{seed}"
                runs.append(dict(part=part, arm=arm, rates=rates, seed=seed, name=name,
                                 cfg=run_config(arm, rates, seed, passes, sc, work, train, name, task)))
    if part == "final": runs.sort(key=lambda r: r["seed"])  # arms interleaved: each meets the same machine load
    return runs


def _generalization():
    "bench/generalization.py, whose test-set and training-folder helpers the study shares."
    sys.path.insert(0, str(Path(__file__).parent))
    import generalization
    return generalization


def load_tests(sc: dict, root: Path, task: str = "denoise") -> dict:
    "The task's test sets, as bench/generalization.py reads them: seeded subsamples (12 images), centre-cropped."
    return {name: _generalization().load_test_set(root / name, sc["eval_images"], sc["eval_crop"])
            for name in TASKS[task]["tests"]}


def summarize(run: dict, history: pd.DataFrame|None, scores: pd.DataFrame|None, seconds: float) -> dict:
    "One run's rows: its validation curve (if `history`) and, for final runs, mean test PSNR per dataset and degree."
    base = dict(part=run["part"], arm=run["arm"], seed=run["seed"], name=run["name"], train_seconds=round(seconds, 1),
                **{k: run["rates"].get(k, np.nan) for k in ("lr", "inner_lr", "factor")})
    pps = passes_per_step(run["arm"])
    curve = [] if history is None else [dict(base, passes=int(r.step) * pps, seconds=round(r.seconds, 1), val_psnr=r.val_psnr)
                                        for r in history.dropna(subset=["val_psnr"]).itertuples()]
    tests = [] if scores is None else [dict(base, dataset=d, degree=g, seen=bool(seen), psnr=p)
                                       for (d, g, seen), p in scores.groupby(["dataset", "degree", "seen"]).psnr.mean().items()]
    return dict(curve=curve, tests=tests)


def test_scores(net, tests: dict, confounders: str) -> pd.DataFrame:
    "PSNR of `net` on every test set at every degree of the task, with the DIL protocol."
    from dil_causal.evaluate import evaluate
    return pd.concat([evaluate(net, imgs, confounders, protocol="dil", dataset=d, metrics=("psnr",), progress=False)
                      for d, imgs in tests.items()])


def train_one(run: dict, threads: int, tests: dict|None) -> dict:
    import torch
    torch.set_num_threads(threads)
    from dil_causal.train import fit
    t0 = time.perf_counter()
    r = fit(resume=True, **run["cfg"])
    # the training loop's own clock (a finished run found on disk keeps the time it took)
    seconds = float(r.history.seconds.iloc[-1]) if len(r.history) else time.perf_counter() - t0
    scores = test_scores(r.model, tests, run["cfg"]["confounders"]) if tests else None
    return summarize(run, r.history, scores, seconds)


def train_groups(groups: list[list[dict]], tests: dict|None, deadline: float, segments: int = 10) -> list[dict]:
    "Groups of runs of one method, each trained as one vectorised ensemble (fit_many) in `segments` stretches taken"
    " round-robin, so that every group gets as far as the time allows; then evaluated together (evaluate_members)."
    import torch
    from torch.func import stack_module_state
    from dil_causal.ensemble import evaluate_members, fit_many
    from dil_causal.models import build
    done, results, seconds = {}, {}, {}
    for seg in range(1, segments + 1):
        for g, runs in enumerate(groups):
            steps = runs[0]["cfg"]["steps"]
            t0 = time.perf_counter()
            pace = seconds.get(g, 0) / max(done.get(g, 0), 1)  # seconds per step so far
            if deadline and done.get(g) and time.time() + pace * steps / segments > deadline: continue
            results[g] = fit_many([x["cfg"] for x in runs], resume=True, stop_after=round(steps * seg / segments), progress=False)
            seconds[g], done[g] = seconds.get(g, 0) + time.perf_counter() - t0, round(steps * seg / segments)
    out = []
    for g, runs in enumerate(groups):
        r, scores = results[g], None
        if tests:
            dev = next(r.models[0].parameters()).device
            params = {k: v.detach() for k, v in stack_module_state(r.models)[0].items()}
            net = build(runs[0]["cfg"]["backbone"]).to(dev)
            scores = pd.concat([evaluate_members(net, params, imgs, runs[0]["cfg"]["confounders"], dataset=d) for d, imgs in tests.items()])
        out += [summarize(x, r.history[r.history.member == k].drop(columns="member"),
                          None if scores is None else scores[scores.member == k], seconds[g] / len(runs)) for k, x in enumerate(runs)]
        print(f"  {len(runs)} runs of {runs[0]['cfg']['method']}: {done[g]} of {runs[0]['cfg']['steps']} steps", flush=True)
    return out


def execute(runs: list[dict], sc: dict, args, tests: dict|None, out: Path, part: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    "Train the runs (process pool or ensembles), appending each finished run's rows to the part's CSVs."
    curves, scores = [], []
    def keep(res):
        curves.extend(res["curve"]); scores.extend(res["tests"])
        pd.DataFrame(curves).to_csv(out / f"{part}_curves.csv", index=False)
        if scores: pd.DataFrame(scores).to_csv(out / f"{part}_tests.csv", index=False)
    if sc["engine"] == "ensemble":
        by_method = {}
        for r in runs: by_method.setdefault(r["cfg"]["method"], []).append(r)
        for res in train_groups(list(by_method.values()), tests, args.deadline): keep(res)
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(train_one, r, args.threads, tests): r for r in runs}
            for i, f in enumerate(as_completed(futures), 1):
                keep(f.result()); print(f"  {part}: {futures[f]['name']} done ({i}/{len(runs)})", flush=True)
    return pd.DataFrame(curves), pd.DataFrame(scores)


def rates_of(row) -> dict:
    "The rate settings of a run (a selected.json entry or a curves row)."
    return {k: float(row[k]) for k in ("lr", "inner_lr", "factor") if k in row and not pd.isna(row[k])}


def evaluate_best(runs: list[dict], tests: dict, out: Path):
    "Each final run's best seen-validation checkpoint (model_best.safetensors) on the test sets, appended to"
    " final_tests.csv as weights=\"best\" rows (the end-of-training rows are weights=\"final\")."
    import torch
    from dil_causal.models import load_model, read_record
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    rows = []
    for run in runs:
        path = Path(run["cfg"]["output_dir"]) / "model_best.safetensors"
        net, rec = load_model(path).eval(), read_record(path)
        scores = test_scores(net, tests, run["cfg"]["confounders"])
        best_passes = int(rec["best"]["step"]) * passes_per_step(run["arm"])
        rows += [dict(r, weights="best", best_passes=best_passes) for r in summarize(run, None, scores, 0)["tests"]]
    old = pd.read_csv(out / "final_tests.csv")
    if "weights" in old: old = old[old.weights.fillna("final") != "best"]
    pd.concat([old.assign(weights="final"), pd.DataFrame(rows)]).to_csv(out / "final_tests.csv", index=False)


def select(curves: pd.DataFrame, grid_curves: pd.DataFrame|None = None, candidates: int = 0) -> dict:
    "Per arm, the rates with the best FINAL seen-degree validation PSNR of `curves` (ties: the smaller rate); whether"
    " it lies at the edge of the full grid (`grid_curves`, default `curves`); with `candidates`, the best that many"
    " settings too (the refine stage trains them at the final budget)."
    last = last_points(curves)
    grid_last = last if grid_curves is None else last_points(grid_curves)
    chosen = {}
    for arm, g in last.groupby("arm"):
        ranked = g.sort_values(["val_psnr", "lr", "inner_lr"], ascending=[False, True, True])
        best = ranked.iloc[0]
        chosen[arm] = dict(rates_of(best), val_psnr=float(best.val_psnr), budget=int(best.passes))
        q = grid_last[grid_last.arm == arm]
        grid = sorted(q.lr.dropna().unique()) if arm == "ERM" else sorted(q.inner_lr.dropna().unique())
        chosen[arm]["at_grid_edge"] = bool((best.lr if arm == "ERM" else best.inner_lr) in (grid[0], grid[-1]))
        if candidates: chosen[arm]["candidates"] = [rates_of(r) for _, r in ranked.head(candidates).iterrows()]
    return chosen


def t_interval(x: np.ndarray) -> tuple[float, float]:
    "Mean and half-width of the 95 % t-interval."
    from scipy import stats
    x = np.asarray(x, float)
    if len(x) < 2: return float(x.mean()), float("nan")
    return float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def answer(out: Path, task: str|None = None) -> str:
    "The answer from the study's CSVs, written to answer.md and curves.png."
    text, curves, per = answer_text(out, task)
    (out / "answer.md").write_text(text)
    plot(curves, per, out / "curves.png")
    return text


def read_tests(out: Path, weights: str = "final") -> pd.DataFrame:
    "The final runs' test rows for `weights`: \"final\" (the weights at the end of training) or \"best\" (each run's"
    " best seen-degree validation checkpoint, from the `best` part)."
    tests = pd.read_csv(out / "final_tests.csv")
    if "weights" not in tests: tests["weights"] = "final"
    return tests[tests.weights.fillna("final") == weights]


def gains(out: Path, weights: str = "final") -> pd.DataFrame:
    "DIL arm - tuned ERM per dataset and seen/unseen, paired by seed: one row per (arm, dataset, seen, seed)."
    tests = read_tests(out, weights)
    per = tests.groupby(["arm", "seed", "dataset", "seen"]).psnr.mean().rename("psnr").reset_index()
    erm = per[per.arm == "ERM"].set_index(["seed", "dataset", "seen"]).psnr
    dil = per[per.arm != "ERM"].set_index(["seed", "dataset", "seen"])
    return dil.assign(gain=dil.psnr - erm.reindex(dil.index).values).reset_index()


def answer_text(out: Path, task: str|None = None) -> tuple[str, pd.DataFrame, pd.DataFrame]:
    "The answer tables as markdown, with the validation curves and the per-seed test PSNR behind them."
    tests, curves = read_tests(out), pd.read_csv(out / "final_curves.csv")
    selected = read_selected(out)
    meta = json.loads((out / "meta.json").read_text()) if (out / "meta.json").exists() else {}
    task = TASKS[task or meta.get("task", "denoise")]
    per = tests.groupby(["arm", "seed", "dataset", "seen"]).psnr.mean().rename("psnr").reset_index()
    secs = tests.groupby(["arm", "seed"]).train_seconds.first()
    lines = paired_table(per, task)
    cols = [(ds, seen) for ds in task["tests"] for seen in (True, False)]
    picked_at = max(int(v.get("budget", 0)) for v in selected.values())
    abs_lines = [f"| arm | selected rates (seed 0, validation at {picked_at:,} passes) | final val PSNR (dB) | " +
                 " | ".join(f"{ds} {'seen' if seen else 'unseen'}" for ds, seen in cols) + " | train s/run |",
                 "|---|---|---|" + "---|" * len(cols) + "---|"]
    for arm in ARMS:
        cell = lambda ds, s: "{:.2f} ± {:.2f}".format(*t_interval(per[(per.arm == arm) & (per.dataset == ds) & (per.seen == s)].psnr.values))
        sel = ", ".join(f"{k} {v:g}" for k, v in selected[arm].items() if k in ("lr", "inner_lr", "factor"))
        fv = curves[curves.arm == arm].sort_values("passes").groupby("seed").tail(1).val_psnr.mean()
        abs_lines.append(f"| {arm} | {sel}{' (grid edge)' if selected[arm]['at_grid_edge'] else ''} | {fv:.2f} | "
                         + " | ".join(cell(ds, seen) for ds, seen in cols) + f" | {secs[arm].mean():.0f} |")
    text = ("## DIL − tuned ERM, paired by seed (equal passes)\n\n" + "\n".join(lines) +
            "\n\n## Each arm at its selected rate (mean ± 95 % CI over seeds)\n\n" + "\n".join(abs_lines) +
            "\n\n" + flattening_text(out, curves) + "\n\n" + best_checkpoint_text(out, task) + wall_time_text(curves) + "\n")
    return text, curves, per


def paired_table(per: pd.DataFrame, task: dict) -> list[str]:
    "Markdown rows: DIL arm - ERM per dataset, seen and unseen, paired by seed (mean, 95 % interval, every seed)."
    degrees = lambda seen: f"seen {task['seen']}" if seen else f"unseen {task['unseen']}"
    lines = ["| DIL arm − tuned ERM | dataset | degrees | mean ± 95 % CI (dB) | per seed |", "|---|---|---|---|---|"]
    for arm in [a for a in ARMS if a != "ERM"]:
        for (ds, seen), g in per[per.arm == arm].groupby(["dataset", "seen"]):
            e = per[(per.arm == "ERM") & (per.dataset == ds) & (per.seen == seen)].set_index("seed").psnr
            d = (g.set_index("seed").psnr - e).dropna()
            m, h = t_interval(d.values)
            lines.append(f"| {arm} | {ds} | {degrees(seen)} | {m:+.2f} ± {h:.2f} | " + ", ".join(f"{v:+.2f}" for v in d.values) + " |")
    return lines


def best_checkpoint_text(out: Path, task: dict) -> str:
    "The paired table again with each run's best seen-degree validation checkpoint (when the `best` part has run)."
    best = read_tests(out, "best")
    if best.empty: return ""
    per = best.groupby(["arm", "seed", "dataset", "seen"]).psnr.mean().rename("psnr").reset_index()
    at = best.groupby("arm").best_passes.agg(["min", "max"])
    return ("## DIL − tuned ERM with each run's best-validated checkpoint\n\nEarly stopping on the seen-degree validation "
            "(never a test image or an unseen degree): each final run's `model_best.safetensors`, taken at " +
            ", ".join(f"{a} {int(r['min']):,}–{int(r['max']):,}" for a, r in at.iterrows()) + " passes.\n\n" + "\n".join(paired_table(per, task)) + "\n\n")


def budget_ladder(out: Path, selected: dict) -> pd.DataFrame:
    "Per arm, seed 0 at the selected settings: its final seen-degree validation PSNR at every budget it was trained"
    " for (the sweep's, the final one in the refine stage, LADDER x the final one in the ladder part)."
    rows = []
    for part in ("sweep", "refine", "ladder"):
        if not (out / f"{part}_curves.csv").exists(): continue
        last = last_points(pd.read_csv(out / f"{part}_curves.csv"))
        for arm in selected:
            same = np.logical_and.reduce([np.isclose(last[k], v) if k in last else np.zeros(len(last), bool)
                                          for k, v in rates_of(selected[arm]).items()])
            rows += [dict(arm=arm, budget=int(r.passes), val_psnr=r.val_psnr) for r in last[(last.arm == arm) & (last.seed == 0) & same].itertuples()]
    return pd.DataFrame(rows, columns=["arm", "budget", "val_psnr"]).drop_duplicates(["arm", "budget"]).sort_values(["arm", "budget"])


def flattening(out: Path, curves: pd.DataFrame, tol: float = 0.1) -> pd.DataFrame:
    "Per arm: the final seen-degree validation PSNR (mean over seeds), its gain over the last third of the final budget,"
    " the first pass count from which it stays within `tol` dB of its final value; and from the budget ladder (seed 0),"
    " the smallest budget whose tripling gained less than FLAT_DB (None: none did)."
    rows = []
    ladder = budget_ladder(out, read_selected(out))
    for arm in [a for a in ARMS if a in set(curves.arm)]:
        by_pass = curves[curves.arm == arm].groupby("passes").val_psnr.mean().sort_index()
        final, budget = by_pass.iloc[-1], by_pass.index[-1]
        within = by_pass[(by_pass - final).abs().iloc[::-1].cummax().iloc[::-1] <= tol]
        steps = ladder[ladder.arm == arm]
        b, v = steps.budget.tolist(), steps.val_psnr.tolist()
        flat = [b[i] for i in range(len(b) - 1) if v[i + 1] - v[i] < FLAT_DB]
        rows.append(dict(arm=arm, budget=int(budget), final_val=final, last_third=final - by_pass[by_pass.index <= budget * 2 / 3].iloc[-1],
                         flat_from=int(within.index[0]), ladder=" → ".join(f"{x:,}: {y:.2f}" for x, y in zip(b, v)),
                         flat_by=flat[0] if flat else None, longest=max(b) if len(b) > 1 else None))
    return pd.DataFrame(rows)


def flattening_text(out: Path, curves: pd.DataFrame) -> str:
    "The flattening table as markdown."
    lines = ["## Has validation flattened? (seen degrees)", "",
             "| arm | final budget (passes) | final val PSNR (mean of seeds) | gain over the last third | "
             f"seed 0 at each budget (passes: PSNR) | flattened (tripling the budget gained < {FLAT_DB} dB) |",
             "|---|---|---|---|---|---|"]
    for r in flattening(out, curves).itertuples():
        verdict = f"by {int(r.flat_by):,} passes" if pd.notna(r.flat_by) else (f"not by {int(r.longest):,} passes" if pd.notna(r.longest) else "not measured: one budget")
        lines.append(f"| {r.arm} | {r.budget:,} | {r.final_val:.2f} | {r.last_third:+.2f} dB | {r.ladder} | {verdict} |")
    return "\n".join(lines)


def wall_time_text(curves: pd.DataFrame) -> str:
    "Equal wall time: each arm's training seconds per pass (runs interleaved by seed, so under the same load), and"
    " what that means for the equal-pass answer."
    last = last_points(curves)
    rate = (last.seconds / last.passes).groupby(last.arm).mean() * 1000  # ms per pass
    erm = rate["ERM"]
    parts = []
    for arm in [a for a in ARMS if a != "ERM" and a in rate]:
        r = rate[arm] / erm
        if r >= 1:
            parts.append(f"{arm} took {r:.2f}× ERM's time per pass, so at equal wall time it would have had {1 / r:.0%} of "
                         "its passes: the equal-pass difference above is an upper bound on its difference at equal time")
        else:
            parts.append(f"{arm} took {r:.2f}× ERM's time per pass, so at equal wall time it could have run "
                         f"{1 / r:.2f}× its passes; what more passes are worth is bounded by the flattening table")
    return ("## Equal wall time\n\nTraining time per pass (mean over seeds; final runs interleaved by seed, so every arm "
            "met the same machine load): " + ", ".join(f"{a} {v:.1f} ms" for a, v in rate.items()) + ". " + "; ".join(parts) + ".")


def plot(curves: pd.DataFrame, per: pd.DataFrame, path: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns
    fig, axs = plt.subplots(1, 2, figsize=(11, 3.6))
    sns.lineplot(curves, x="passes", y="val_psnr", hue="arm", errorbar=("ci", 95), marker="o", ax=axs[0])
    axs[0].set(title="seen-degree validation (held-out CBSD432), selected rates", ylabel="PSNR (dB)")
    sns.pointplot(per, x="dataset", y="psnr", hue="arm", dodge=0.3, errorbar=("ci", 95), ax=axs[1], linestyles="none")
    axs[1].set(title="test PSNR by dataset (seen and unseen pooled per seed)", ylabel="PSNR (dB)")
    fig.tight_layout(); fig.savefig(path, dpi=90); plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=("sweep", "select", "refine", "final", "best", "ladder", "answer", "all"))
    ap.add_argument("--scale", choices=SCALES, default="cpu")
    ap.add_argument("--task", choices=TASKS, default="denoise", help="denoise (CBSD68, Kodak24) or deblur (Set5, Set14)")
    ap.add_argument("--out", required=True, help="result folder (CSV, JSON, Markdown, PNG: at most 8 files)")
    ap.add_argument("--work", help="checkpoint folder (default: OUT/../study-work-<scale>, not committed)")
    ap.add_argument("--data", help="data folder with CBSD432_jpg and the task's test sets (default: $DIL_DATA or ../shared/data)")
    ap.add_argument("--final-passes", type=int, help="passes per final run (default: the scale's)")
    ap.add_argument("--jobs", type=int, default=2); ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=0, help="seconds for the whole command: ensembles train in round-robin "
                    "stretches and stop where the next would overrun it (the reached budget is in the curves)")
    args = ap.parse_args(argv)
    sc, out = dict(SCALES[args.scale]), Path(args.out)
    if args.final_passes: sc["final_passes"] = args.final_passes
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.work or out.parent / f"study-work-{args.scale}")
    root = Path(args.data) if args.data else data_root()
    for d in ("CBSD432_jpg", *TASKS[args.task]["tests"]):
        if args.part != "answer" and not (root / d).is_dir(): ap.error(f"{root / d} does not exist (--data or $DIL_DATA)")
    train, t0 = str(root / "CBSD432_jpg"), time.perf_counter()
    # the commit the runs start from (read now: the tree may change while they train); "-dirty" when code differs from
    # it (result sets under bench/results/ do not count: a part of the study may run while another's results are new)
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    commit = git("rev-parse", "--short", "HEAD") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results") else "")
    start = time.time()
    share = lambda f: start + f * args.time_limit if args.time_limit else 0  # sweep to 25 %, refine to 50 %, finals to 85 %
    if sc.get("train_images"):  # the smoke scale trains on a seeded subsample (links in the work folder)
        work.mkdir(parents=True, exist_ok=True); train = _generalization().train_folder(train, sc["train_images"], work)
    meta_path = out / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if args.part in ("sweep", "all"):
        print(f"sweep: {len(plan('sweep', sc, work, train, task=args.task))} runs", flush=True)
        args.deadline = share(0.25)
        execute(plan("sweep", sc, work, train, task=args.task), sc, args, None, out, "sweep")
    # two stages when the final budget is longer than the sweep's: the sweep's best REFINE_TOP settings per method are
    # trained again at the final budget (seed 0) and the selection is made there, so that a rate that is best over a
    # short run but unstable over a long one is not carried into the finals
    refine = sc["final_passes"] > sc["sweep_passes"]
    if args.part in ("select", "all"):
        chosen = select(pd.read_csv(out / "sweep_curves.csv"), candidates=REFINE_TOP if refine else 0)
        (out / "selected.json").write_text(json.dumps(chosen, indent=1)); print("selected (sweep):", chosen, flush=True)
    if args.part in ("refine", "all") and refine:
        sweep_pick = read_selected(out)
        runs = plan("refine", sc, work, train, sweep_pick, args.task)
        print(f"refine: {len(runs)} runs at {sc['final_passes']:,} passes", flush=True)
        args.deadline = share(0.5)
        execute(runs, sc, args, None, out, "refine")
        chosen = select(pd.read_csv(out / "refine_curves.csv"), pd.read_csv(out / "sweep_curves.csv"))
        for arm in chosen: chosen[arm].update(sweep_pick=sweep_pick[arm], candidates=sweep_pick[arm]["candidates"])
        (out / "selected.json").write_text(json.dumps(chosen, indent=1)); print("selected (final budget):", chosen, flush=True)
    if args.part in ("final", "all"):
        runs = plan("final", sc, work, train, read_selected(out), args.task)
        print(f"final: {len(runs)} runs", flush=True)
        args.deadline = share(0.85)
        execute(runs, sc, args, load_tests(sc, root, args.task), out, "final")
    if args.part in ("best", "all") and sc["engine"] == "process":
        runs = plan("final", sc, work, train, read_selected(out), args.task)
        print(f"best: evaluating the best-validated checkpoints of {len(runs)} final runs", flush=True)
        evaluate_best(runs, load_tests(sc, root, args.task), out)
    if args.part == "ladder" or (args.part == "all" and sc["engine"] == "process" and refine):
        runs = plan("ladder", sc, work, train, read_selected(out), args.task)
        print(f"ladder: {len(runs)} runs at {LADDER * sc['final_passes']:,} passes", flush=True)
        execute(runs, sc, args, None, out, "ladder")
    if args.part in ("answer", "all", "best", "ladder"): print(answer(out, args.task if args.part in ("all", "best", "ladder") else None))
    if args.part != "answer":
        import torch
        hw = torch.cuda.get_device_name(0) if torch.cuda.is_available() and sc["engine"] == "ensemble" else \
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}  # again: another part may have written it
        meta.setdefault("parts", {})[args.part] = dict(command="python bench/study.py " + " ".join(argv or sys.argv[1:]),
                                                       commit=commit, hardware=hw, torch=torch.__version__,
                                                       seconds=round(time.perf_counter() - t0), jobs=args.jobs,
                                                       finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
        meta.update(scale=args.scale, task=args.task, settings=sc, grids=GRIDS)
        meta_path.write_text(json.dumps(meta, indent=1, default=str))


if __name__ == "__main__":
    main()
