"""Generalisation to unseen distortion degrees: ERM against the DIL variants at matched compute.

Every run (method x backbone x learning-rate pairing x seed) trains once through `dil_causal.train.fit` and is
stopped and evaluated at each training budget on the way (`fit(stop_after=...)`, then `fit(resume=True, ...)`:
resuming is bit-identical, so one run gives the whole curve). Budgets count forward/backward passes, so the methods
get matched compute: ERM makes one pass per step, first-order DIL (dil_sf) one per seen confounder per outer step,
dil_pf n+1, dil_ss 2n, dil_ps n+1 (n seen confounders; the history's `passes` column is checked against it).

Engines (--engine): `ensemble` (the default) trains the runs that share a method and a backbone as one vectorised
ensemble (`dil_causal.ensemble.fit_many`: each member equals its single run up to float rounding) and evaluates them
together (`evaluate_members`); their `train_seconds` is the ensemble's time divided by its members. `process` trains
each run alone through `fit`. Both write the same rows. The second-order variants and LIR always train alone.

Test images are distorted with the seeded DIL protocol (`evaluate(protocol="dil")`: noise seeded with 0 before each
image and degree, inputs clipped to [0, 1]); PSNR/SSIM on RGB [0, 255] after 8-bit rounding. Intermediate budgets
measure PSNR only; the final budget all four metrics (PSNR, SSIM, on RGB and Y). Grayscale test images (one in
Set14) are read as RGB by repeating the channel, as `dil_causal.data.read_image` does.

Writes into --out (at most five files): results.csv (every measurement), table.md (the paper's layout at the final
budget: mean over seeds with 95% t-intervals, DIL - ERM gains paired by seed), psnr_vs_sigma.png,
gain_vs_budget.png, meta.json (command, commit, wall times, hardware, versions). Checkpoints go to --work.

Learning-rate pairings (--pairings), with --lr as the base rate (reference loop: 1e-4; the CPU study: 4e-4):
  reference    ERM Adam lr; DIL inner Adam lr (betas 0, 0.999) and meta Adam lr, all = --lr (the public loop's).
  unthrottled  as reference, but the first-order variants' meta Adam lr = n x --lr. Adam normalises the Reptile
               difference, so at the reference pairing theta moves about one inner step per outer step while the
               outer step spends n passes; n x lr lets it move up to the whole inner trajectory (Reptile's outer
               step size 1), matching ERM's distance per pass. ERM and the second-order variants are unchanged.

Learning-rate schedule (--schedule): constant (the default, and every preset's), or cosine, which decays theta's
rate (ERM's, the DIL meta rate) to 0 at the final budget; the first-order variants' inner rate stays constant.
Budgets before the last are then measured part-way down the curve, so only the final budget is a finished run.

Modes (explicit flags override them):
  --quick  rrdb-tiny, 1 seed, budgets 16,32 passes, patch 32, batch 4, 2 images per test set cropped to 96 px,
           2 degrees, 24 training images: about a minute on one core (used by tests/test_generalization_bench.py).
  --cpu    the CPU-scale budget study: 3 seeds x rrdb-tiny,rrdb-small x both pairings x erm,dil_sf, budgets
           250..2000 passes, patch 32, batch 8, lr 4e-4, 12 images per test set centre-cropped to 192 px. Printed
           estimate on the 2-core machines: about 4 min per rrdb-tiny run, 21 per rrdb-small run, 2 h per task
           with --jobs 2. The same grid with --device cuda --jobs 18 on one H100 (16 cores) reached 4,000 passes
           in 5 min: many small runs at once, limited by each process's Python overhead rather than by the GPU.
  --full   the paper's settings for a GPU: rrdb (nf 64, nb 23), patch 64, batch 16, lr 1e-4, budgets up to
           440k passes (110k outer steps of dil_sf), full test sets at full size.

Usage:
  python bench/generalization.py --quick --out /tmp/gen
  python bench/generalization.py --cpu --task denoise --jobs 2 --out bench/results/denoise
  python bench/generalization.py --full --task denoise --device cuda --jobs 8 --threads 2
  python bench/generalization.py --report runs/a runs/b --out merged
With --time-limit a run stops before a budget it would finish too late; the table then uses, per block, the largest
budget every run reached (SSIM/Y metrics are measured only at a run's planned final budget).   # re-render from one or several results.csv
"""
from __future__ import annotations

import argparse, json, math, os, platform, random, shutil, subprocess, sys, tempfile, time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TASKS = {  # preset of dil_causal.sampler.PRESETS, default training folder, default test folders
    "denoise": dict(preset="denoise", train="CBSD432_jpg", tests=("CBSD68", "Kodak24")),
    "deblur": dict(preset="deblur", train="CBSD432_jpg", tests=("Set5", "Set14")),
}
PAIRINGS = ("reference", "unthrottled")
ALL_METRICS = ("psnr", "ssim", "psnr_y", "ssim_y")
COLUMNS = ["task", "method", "backbone", "pairing", "seed", "budget_passes", "passes", "outer_steps", "dataset",
           "image", "degree", "seen", *ALL_METRICS, "train_seconds"]
MODES = {
    "quick": dict(methods="erm,dil_sf", backbones="rrdb-tiny", pairings="reference", seeds="0", budgets="16,32",
                  patch=32, batch=4, lr=4e-4, eval_images=2, eval_crop=96, degrees="first-seen,last-unseen",
                  train_images=24),
    "cpu": dict(methods="erm,dil_sf", backbones="rrdb-tiny,rrdb-small", pairings="reference,unthrottled",
                seeds="0,1,2", budgets="250,500,1000,2000", patch=32, batch=8, lr=4e-4, eval_images=12,
                eval_crop=192, degrees="all", train_images=0),
    "full": dict(methods="erm,dil_sf", backbones="rrdb", pairings="reference,unthrottled", seeds="0,1,2",
                 budgets="27500,55000,110000,220000,440000", patch=64, batch=16, lr=1e-4, eval_images=0,
                 eval_crop=0, degrees="all", train_images=0),
}
# seconds per forward/backward pass at batch 8 x 32 x 32 on one thread, and per full-size (481x321) test forward,
# measured on the project's 2-core CPU machines (shared); used only for the printed estimate
CPU_PASS_SECONDS = {"rrdb-tiny": 0.07, "rrdb-small": 0.46, "rrdb": 20.0}
CPU_EVAL_SECONDS = {"rrdb-tiny": 0.62, "rrdb-small": 1.95, "rrdb": 90.0}


def data_root() -> Path:
    return Path(os.environ.get("DIL_DATA") or ROOT.parent / "shared" / "data")


def method_record(method: str):
    "The method's record in `dil_causal.train.METHODS`: its passes per outer step, label, whether it has an inner rate."
    from dil_causal.train import METHODS
    if method not in METHODS: raise KeyError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    return METHODS[method]


def passes_per_step(method: str, n_seen: int) -> int:
    "Forward/backward passes of the backbone per outer step, as `fit`'s history counts them (from the method's record)."
    return method_record(method).passes(n_seen)


def method_label(method: str) -> str:
    "How tables and plots name a method: ERM, LIR, DIL_sf, ... (the record's label)."
    return method_record(method).label


def lr_settings(method: str, pairing: str, lr: float, n_seen: int) -> dict:
    "fit() overrides of a method under a named learning-rate pairing: for a method with an inner rate, the public"
    " code's (meta rate = inner rate) or ours, 'unthrottled' (meta rate n x the inner one)."
    if pairing not in PAIRINGS: raise KeyError(f"unknown pairing {pairing!r}; known pairings: {', '.join(PAIRINGS)}")
    if method_record(method).inner_rate:
        return dict(lr=lr * (n_seen if pairing == "unthrottled" else 1), inner_lr=lr, inner_betas=(0.0, 0.999))
    return dict(lr=lr)


def confounders(task: str, degrees: str):
    from dil_causal.sampler import get_preset
    confs = get_preset(TASKS[task]["preset"])
    if degrees == "all": return confs
    seen, unseen = [c for c in confs if c.seen], [c for c in confs if not c.seen]
    named = {"first-seen": seen[0], "last-seen": seen[-1], "first-unseen": unseen[0], "last-unseen": unseen[-1]}
    out = []
    for d in degrees.split(","):
        if d in named: out.append(named[d]); continue
        hit = [c for c in confs if c.degree == float(d)]
        if not hit: raise ValueError(f"degree {d} is not in the {task} preset: {', '.join(f'{c.degree:g}' for c in confs)}")
        out += hit
    return out


def load_test_set(folder: str, n_images: int, crop: int) -> dict:
    "A test folder, optionally a seeded subsample of `n_images` (random.Random(0) over sorted names), centre-cropped."
    from dil_causal.data import image_files, read_image
    files = image_files(folder)
    if n_images and n_images < len(files): files = sorted(random.Random(0).sample(files, n_images))
    out = {}
    for f in files:
        img = read_image(f)
        if crop:
            h, w = img.shape[-2:]
            t, l = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
            img = img[:, t:t + crop, l:l + crop].contiguous()
        out[f.name] = img
    return out


def train_folder(folder: str, n_images: int, work: Path) -> str:
    "The training folder, or a seeded subsample of it as links in the work directory."
    if not n_images: return str(folder)
    from dil_causal.data import image_files
    files = image_files(folder)
    if n_images >= len(files): return str(folder)
    sub = work / f"train-{Path(folder).name}-{n_images}"
    if not sub.exists():
        tmp = Path(tempfile.mkdtemp(dir=work)); [(tmp / f.name).symlink_to(f.resolve()) for f in
                                                 sorted(random.Random(0).sample(files, n_images))]
        try: tmp.rename(sub)
        except OSError: shutil.rmtree(tmp)  # another worker made it first
    return str(sub)


def _setup(spec: dict) -> dict:
    "What one run needs: its fit() configuration, outer steps per budget, test sets and confounders."
    from dil_causal.sampler import get_preset
    task, method = spec["task"], spec["method"]
    n_seen = sum(c.seen for c in get_preset(TASKS[task]["preset"]))
    pps = passes_per_step(method, n_seen)
    steps = [b // pps for b in spec["budgets"]]
    if min(steps) < 1: raise ValueError(f"budget {min(spec['budgets'])} passes is less than one outer step of {method} ({pps} passes)")
    out_dir = Path(spec["work"]) / f"{task}-{method}-{spec['backbone']}-{spec['pairing'].replace('+', '_')}-s{spec['seed']}"
    cfg = dict(method=method, backbone=spec["backbone"], confounders=TASKS[task]["preset"], data=spec["train"],
               patch_size=spec["patch"], batch_size=spec["batch"], steps=steps[-1], seed=spec["seed"],
               output_dir=str(out_dir), progress=False, log_every=steps[-1], cpu=spec["device"] == "cpu",
               schedule=spec["schedule"], workers=spec["workers"], **spec["lr_settings"])
    return dict(cfg=cfg, pps=pps, steps=steps, out_dir=out_dir)


def _check_history(h, s: int, pps: int, name: str):
    if int(h.step.iloc[-1]) != s or int(h.passes.iloc[-1]) != s * pps:
        raise RuntimeError(f"{name}: expected step {s} with {s * pps} passes, the history says "
                           f"{int(h.step.iloc[-1])} / {int(h.passes.iloc[-1])}")


def _rows(spec: dict, df: pd.DataFrame, budget: int, s: int, pps: int, train_seconds: float) -> list[dict]:
    return [{**{k: np.nan for k in ALL_METRICS}, **rec, "task": spec["task"], "method": spec["method"],
             "backbone": spec["backbone"], "pairing": spec["pairing"], "seed": spec["seed"], "budget_passes": budget,
             "passes": s * pps, "outer_steps": s, "train_seconds": round(train_seconds, 2)} for rec in df.to_dict("records")]


def _result(spec, rows, name, train_seconds, eval_seconds, t_start) -> dict:
    return dict(rows=rows, reached=max((r["budget_passes"] for r in rows), default=0), run=name,
                train_seconds=round(train_seconds, 1), eval_seconds=round(eval_seconds, 1),
                wall_seconds=round(time.perf_counter() - t_start, 1),
                lr_settings={k: list(v) if isinstance(v, tuple) else v for k, v in spec["lr_settings"].items()})


def _over_deadline(spec, done: int, s: int, train_seconds: float, last_eval: float) -> bool:
    "Whether the next budget would overrun --time-limit (from the pace so far)."
    return bool(spec["deadline"] and done and time.time() + train_seconds / done * (s - done) + 1.5 * last_eval > spec["deadline"])


def run_one(spec: dict) -> dict:
    "Train one (method, backbone, pairing, seed) through every budget with `fit`, evaluating after each (--engine process)."
    import torch
    torch.set_num_threads(spec["threads"])
    from dil_causal.evaluate import evaluate
    from dil_causal.data import load_images
    from dil_causal.train import fit
    t_start, r0 = time.perf_counter(), _setup(spec)
    cfg, pps, out_dir = r0["cfg"], r0["pps"], r0["out_dir"]
    confs = confounders(spec["task"], spec["degrees"])
    tests = {name: load_test_set(folder, spec["eval_images"], spec["eval_crop"]) for name, folder in spec["tests"]}
    train_images = load_images(spec["train"])  # read once; every budget's `fit` segment reuses them
    rows, train_seconds, eval_seconds, last_eval, done = [], 0.0, 0.0, 0.0, 0
    for budget, s in zip(spec["budgets"], r0["steps"]):
        if _over_deadline(spec, done, s, train_seconds, last_eval): break
        t0 = time.perf_counter()
        r = fit(resume=True, stop_after=s, images=train_images, **cfg)
        train_seconds += time.perf_counter() - t0
        _check_history(r.history, s, pps, out_dir.name)
        t0 = time.perf_counter()
        metrics = ALL_METRICS if budget == spec["budgets"][-1] else ("psnr",)
        dev = "cuda" if spec["device"] == "cuda" else "cpu"
        model = r.model.to(dev)
        for name, images in tests.items():
            df = evaluate(model, images, confs, protocol="dil", dataset=name, device=dev, progress=False, metrics=metrics)
            rows += _rows(spec, df, budget, s, pps, train_seconds)
        last_eval = time.perf_counter() - t0; eval_seconds += last_eval; done = s
    return _result(spec, rows, out_dir.name, train_seconds, eval_seconds, t_start)


def run_group(specs: list[dict]) -> list[dict]:
    "Train runs that share method and backbone as one ensemble (`fit_many`) through every budget, evaluating the"
    " members together (`evaluate_members`) after each (--engine ensemble); the same rows as `run_one` per run."
    import torch
    torch.set_num_threads(specs[0]["threads"])
    from torch.func import stack_module_state
    from dil_causal.ensemble import evaluate_members, fit_many
    from dil_causal.data import load_images
    from dil_causal.models import build
    t_start, setups, spec0 = time.perf_counter(), [_setup(s) for s in specs], specs[0]
    pps, dev = setups[0]["pps"], "cuda" if spec0["device"] == "cuda" else "cpu"
    confs = confounders(spec0["task"], spec0["degrees"])
    tests = {name: load_test_set(folder, spec0["eval_images"], spec0["eval_crop"]) for name, folder in spec0["tests"]}
    train_images = load_images(spec0["train"])
    rows, train_seconds, eval_seconds, last_eval, done = [[] for _ in specs], 0.0, 0.0, 0.0, 0
    for budget, s in zip(spec0["budgets"], setups[0]["steps"]):
        if _over_deadline(spec0, done, s, train_seconds, last_eval): break
        t0 = time.perf_counter()
        r = fit_many([x["cfg"] for x in setups], resume=True, stop_after=s, images=train_images, progress=False)
        train_seconds += time.perf_counter() - t0
        for k, x in enumerate(setups): _check_history(r.history[r.history.member == k], s, pps, x["out_dir"].name)
        t0 = time.perf_counter()
        metrics = ALL_METRICS if budget == spec0["budgets"][-1] else ("psnr",)
        net = build(spec0["backbone"]).to(dev)
        params = {k: v.detach().to(dev) for k, v in stack_module_state([m.to(dev) for m in r.models])[0].items()}
        for name, images in tests.items():
            df = evaluate_members(net, params, images, confs, protocol="dil", metrics=metrics, dataset=name)
            for k, spec in enumerate(specs):
                rows[k] += _rows(spec, df[df.member == k].drop(columns="member"), budget, s, pps, train_seconds / len(specs))
        last_eval = time.perf_counter() - t0; eval_seconds += last_eval; done = s
    return [_result(spec, rows[k], x["out_dir"].name, train_seconds / len(specs), eval_seconds / len(specs), t_start)
            for k, (spec, x) in enumerate(zip(specs, setups))]


def groups(specs: list[dict], engine: str) -> list[list[dict]]:
    "The ensembles of --engine ensemble: runs of one method (with vectorised steps) and backbone; others alone."
    from dil_causal.ensemble import ENSEMBLE_STEPS
    if engine == "process": return [[s] for s in specs]
    out = {}
    for s in specs:
        key = (s["method"], s["backbone"]) if s["method"] in ENSEMBLE_STEPS else (s["method"], s["backbone"], s["pairing"], s["seed"])
        out.setdefault(key, []).append(s)
    return list(out.values())


def run_specs(group: list[dict]) -> list[dict]:
    "One unit of work: an ensemble of runs, or one run that trains alone."
    from dil_causal.ensemble import ENSEMBLE_STEPS
    return run_group(group) if group[0]["method"] in ENSEMBLE_STEPS and group[0].get("engine") == "ensemble" else [run_one(s) for s in group]


def _worker_init(threads: int):
    import torch
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------------- the report
def _ci95(x) -> float:
    x = np.asarray(x, dtype=float); x = x[np.isfinite(x)]
    if len(x) < 2: return float("nan")
    from scipy.stats import t
    return float(t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))


def expand_pairings(df: pd.DataFrame) -> pd.DataFrame:
    "Runs shared by several pairings (ERM: 'reference+unthrottled') are listed once under each."
    df = df.assign(pairing=df.pairing.astype(str).str.split("+")).explode("pairing")
    return df.reset_index(drop=True)


def per_seed(df: pd.DataFrame) -> pd.DataFrame:
    "Mean over images: one row per run, budget, dataset and degree."
    keys = ["task", "method", "backbone", "pairing", "seed", "budget_passes", "dataset", "degree", "seen"]
    return df.groupby(keys, as_index=False)[list(ALL_METRICS) + ["train_seconds"]].mean()


def gains(ps: pd.DataFrame, level: list[str]) -> pd.DataFrame:
    "DIL - ERM PSNR, paired by seed (same seed: same initialisation, patches and test noise), at `level` keys."
    erm = ps[ps.method == "erm"].drop(columns="method")
    dil = ps[ps.method != "erm"]
    on = ["task", "backbone", "pairing", "seed", "budget_passes", "dataset", "degree", "seen"]
    m = dil.merge(erm, on=on, suffixes=("", "_erm"))
    m["gain"] = m.psnr - m.psnr_erm
    m["gain_ssim"] = m.ssim - m.ssim_erm
    return m


def _fmt(mean, ci, nd=2):
    if not np.isfinite(mean): return "–"
    return f"{mean:.{nd}f}" + (f" ± {ci:.{nd}f}" if np.isfinite(ci) else "")


def render_table(df: pd.DataFrame) -> str:
    ps = per_seed(expand_pairings(df))
    lines = ["# ERM against DIL at matched compute", "",
             "PSNR (dB, RGB) / SSIM at the final budget of each block; mean over seeds ± the 95% t-interval across "
             "seeds (no interval with one seed). Gain: DIL − ERM PSNR, paired by seed. Seeded DIL test protocol "
             "(noise seeded 0 per image and degree, inputs clipped to [0, 1]). *unseen* marks degrees held out of "
             "training.", ""]
    for (task, bb, pairing), blk in ps.groupby(["task", "backbone", "pairing"], sort=False):
        final = blk.groupby(["method", "seed"]).budget_passes.max().min()
        blk = blk[blk.budget_passes == final]
        methods = ["erm"] + sorted(m for m in blk.method.unique() if m != "erm")
        if "erm" not in blk.method.unique(): methods = methods[1:]
        n_seeds = blk.groupby("method").seed.nunique().to_dict()
        n_img = df[(df.task == task) & (df.backbone == bb)].groupby("dataset").image.nunique().to_dict()
        lines += [f"## {task}: {bb}, {pairing} pairing, {final:,} passes", "",
                  "seeds: " + ", ".join(f"{m} {n_seeds[m]}" for m in methods) + "; test images: "
                  + ", ".join(f"{d} {n}" for d, n in n_img.items()), ""]
        dil = [m for m in methods if m != "erm"]
        head = ["dataset", "degree"] + [method_label(m) for m in methods] + \
               [f"gain {method_label(m)}" for m in dil if "erm" in methods]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        g = gains(blk, []) if "erm" in methods and dil else None
        for (ds, deg, seen), cell in blk.groupby(["dataset", "degree", "seen"], sort=False):
            row = [ds, f"{deg:g}" + ("" if seen else " *unseen*")]
            for m in methods:
                c = cell[cell.method == m]
                row.append(f"{_fmt(c.psnr.mean(), _ci95(c.psnr))} / {_fmt(c.ssim.mean(), _ci95(c.ssim), 4)}")
            if g is not None:
                for m in dil:
                    x = g[(g.method == m) & (g.dataset == ds) & (g.degree == deg)].gain
                    row.append(f"{x.mean():+.2f}" + (f" ± {_ci95(x):.2f}" if np.isfinite(_ci95(x)) else ""))
            lines.append("| " + " | ".join(row) + " |")
        if g is not None:
            for label, sel in (("mean seen", g.seen), ("mean unseen", ~g.seen)):
                row = ["all", f"**{label}**"] + ["" for _ in methods]
                for m in dil:
                    x = g[sel & (g.method == m)].groupby("seed").gain.mean()
                    row.append(f"**{x.mean():+.2f}**" + (f" ± {_ci95(x):.2f}" if np.isfinite(_ci95(x)) else ""))
                lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    return "\n".join(lines)


def _style(i):
    return ["-", "--", ":", "-."][i % 4]


def plot_psnr_vs_sigma(df: pd.DataFrame, path: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ps = per_seed(expand_pairings(df))
    panels = list(ps.groupby(["task", "dataset"], sort=False).groups)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    colors = {m: f"C{i}" for i, m in enumerate(["erm", "dil_sf", "dil_pf", "dil_ss", "dil_ps", "lir"])}
    for ax, (task, ds) in zip(axes[0], panels):
        p = ps[(ps.task == task) & (ps.dataset == ds)]
        combos = list(p.groupby(["backbone", "pairing"], sort=False).groups)
        drawn = set()
        for i, (bb, pr) in enumerate(combos):
            q = p[(p.backbone == bb) & (p.pairing == pr)]
            q = q[q.budget_passes == q.groupby(["method", "seed"]).budget_passes.max().min()]
            for m, r in q.groupby("method"):
                if m == "erm" and (bb, "erm") in drawn: continue  # ERM does not depend on the pairing
                drawn.add((bb, m) if m == "erm" else (bb, pr, m))
                s = r.groupby("degree").psnr.agg(["mean", _ci95, "count"]).reset_index()
                label = f"{m.upper()} {bb}" if m == "erm" else f"{m} {bb} {pr}"
                ax.errorbar(s.degree, s["mean"], yerr=s["_ci95"].fillna(0), color=colors.get(m, "k"),
                            ls=_style(i), marker="o", ms=3, capsize=2, label=label)
        unseen = p[~p.seen].degree
        if len(unseen): ax.axvspan(unseen.min() - 0.5 * (unseen.max() - unseen.min() + 1) / max(len(unseen.unique()), 1),
                                   unseen.max() * 1.02, color="0.9", zorder=0, label="unseen")
        ax.set(title=f"{ds} ({task})", xlabel="noise σ" if task == "denoise" else "blur σ", ylabel="PSNR (dB)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    n = ps.groupby(["method", "backbone", "pairing"]).seed.nunique()
    fig.suptitle(f"PSNR against the degree at the final budget (mean over {n.min()}–{n.max()} seeds, 95% CI)", fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


def plot_gain_vs_budget(df: pd.DataFrame, path: Path):
    import matplotlib; matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ps = per_seed(expand_pairings(df))
    panels = list(ps.groupby(["task", "dataset"], sort=False).groups)
    fig, axes = plt.subplots(2, len(panels), figsize=(4.2 * len(panels), 6.4), squeeze=False, sharex="col")
    unseen = ps[~ps.seen]
    curves = unseen.groupby(["task", "dataset", "method", "backbone", "pairing", "seed", "budget_passes"],
                            as_index=False).psnr.mean()  # mean over the unseen degrees, per seed
    g = gains(unseen, []).groupby(["task", "dataset", "method", "backbone", "pairing", "seed", "budget_passes"],
                                  as_index=False).gain.mean()
    # one colour per DIL configuration (method, backbone, pairing) in both rows; ERM in grey, one line style per backbone
    colour = {k: f"C{i % 10}" for i, k in enumerate(dict.fromkeys(zip(g.method, g.backbone, g.pairing)))}
    dash = {bb: _style(i) for i, bb in enumerate(dict.fromkeys(ps.backbone))}

    def band(ax, frame, value, col, **kw):
        "The mean of `value` over seeds against the budget, with its 95% interval as a band."
        s = frame.groupby("budget_passes")[value].agg(["mean", _ci95]).reset_index()
        ax.plot(s.budget_passes, s["mean"], marker="o", ms=3, color=col, **kw)
        ax.fill_between(s.budget_passes, s["mean"] - s["_ci95"].fillna(0), s["mean"] + s["_ci95"].fillna(0),
                        alpha=0.15, color=col)

    for j, (task, ds) in enumerate(panels):
        top, bot = axes[0][j], axes[1][j]
        c = curves[(curves.task == task) & (curves.dataset == ds)]
        for bb, q in c[c.method == "erm"].groupby("backbone", sort=False):  # ERM does not depend on the pairing
            band(top, q.drop_duplicates(["seed", "budget_passes"]), "psnr", "0.35", ls=dash[bb], label=f"ERM {bb}")
        for (m, bb, pr), q in c[c.method != "erm"].groupby(["method", "backbone", "pairing"], sort=False):
            band(top, q, "psnr", colour[m, bb, pr], ls=dash[bb], label=f"{m} {bb} {pr}")
        q = g[(g.task == task) & (g.dataset == ds)]
        for (m, bb, pr), r in q.groupby(["method", "backbone", "pairing"], sort=False):
            n = r.groupby("budget_passes").seed.nunique().min()
            band(bot, r, "gain", colour[m, bb, pr], ls=dash[bb], label=f"{m} − ERM, {bb}, {pr} (n={n})")
        bot.axhline(0, color="k", lw=0.8)
        top.set(title=f"{ds} ({task}): unseen degrees", ylabel="PSNR (dB), mean over unseen")
        bot.set(xlabel="training budget (forward/backward passes)", ylabel="gain DIL − ERM (dB)")
        for ax in (top, bot): ax.set_xscale("log", base=2); ax.grid(alpha=0.3)
        if len(q): bot.legend(fontsize=6)  # an ERM-only set (a control) has no gains to draw
    axes[0][0].legend(fontsize=6)
    fig.suptitle("Unseen-degree PSNR and DIL − ERM gain against the training budget (bands: 95% CI across seeds)", fontsize=9)
    fig.tight_layout(); fig.savefig(path, dpi=110); plt.close(fig)


def report(df: pd.DataFrame, out: Path):
    (out / "table.md").write_text(render_table(df))
    plot_psnr_vs_sigma(df, out / "psnr_vs_sigma.png")
    plot_gain_vs_budget(df, out / "gain_vs_budget.png")


# settings that change what a figure means: result sets that differ in one cannot share a table
COMPARABLE = ("patch", "batch", "lr", "schedule", "train", "train_images", "eval_images", "eval_crop", "protocol")
SETTING_DEFAULTS = {"schedule": "constant"}  # sets written before a setting existed ran with its default
MEASUREMENT = ["task", "method", "backbone", "pairing", "seed", "budget_passes", "dataset", "image", "degree"]


def _settings(meta: dict) -> list[dict]:
    "The settings of a meta.json, or of every source of a merged one."
    if "sources" in meta: return [s for m in meta["sources"] for s in _settings(m)]
    return [meta["settings"]] if "settings" in meta else []


def read_results(paths: list[str]) -> tuple[pd.DataFrame, list]:
    "Concatenate results.csv files (or their folders), refusing sets whose settings or measurements disagree."
    frames, metas, where = [], [], []
    for p in map(Path, paths):
        csv = p / "results.csv" if p.is_dir() else p
        if not csv.exists(): raise FileNotFoundError(f"no results.csv at {csv}")
        frames.append(pd.read_csv(csv))
        meta = csv.parent / "meta.json"
        if meta.exists():
            metas.append(json.loads(meta.read_text()))
            where += [(csv.parent, s) for s in _settings(metas[-1])]
    for key in COMPARABLE:
        seen = {}
        for folder, s in where: seen.setdefault(json.dumps(s.get(key, SETTING_DEFAULTS.get(key))), folder)
        if len(seen) > 1:
            raise ValueError(f"--report: the result sets differ in {key!r} ("
                             + ", ".join(f"{v} in {f}" for v, f in seen.items())
                             + "): their figures are not comparable; report them separately")
    df = expand_pairings(pd.concat(frames, ignore_index=True))  # ERM's 'reference+unthrottled' meets 'unthrottled'
    spread = df.groupby(MEASUREMENT).psnr.agg(lambda v: v.max() - v.min())
    if (spread > 1e-3).any():
        k = spread[spread > 1e-3].index[0]
        raise ValueError(f"--report: {(spread > 1e-3).sum()} measurements differ between the result sets, e.g. "
                         + ", ".join(f"{n}={v}" for n, v in zip(MEASUREMENT, k))
                         + ": the same run measured twice must agree; report these sets separately")
    # a run measured twice (e.g. a longer re-run): keep the row with the most metrics (SSIM exists at final budgets)
    n_metrics = df[list(ALL_METRICS)].notna().sum(axis=1)
    keep = n_metrics.sort_values(ascending=False, kind="stable").index
    df = df.loc[keep].drop_duplicates(MEASUREMENT).sort_index().reset_index(drop=True)
    return df, metas


# ---------------------------------------------------------------------------------------------------- the grid
def source_commit() -> str:
    "The checkout's commit (`git describe --always --dirty`) the run starts from, or '?' outside a git checkout."
    try:
        r = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                           capture_output=True, text=True, timeout=20)
        return r.stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError): return "?"


def hardware(device: str) -> str:
    import torch
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"
    if device == "cuda": return f"{torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda}); {cpu}"
    return cpu


def plan(args, n_seen: int) -> list[dict]:
    specs = []
    for bb in args.backbones:
        for m in args.methods:
            # runs whose settings do not depend on the pairing (ERM, second order) are trained once for all pairings
            groups = {}
            for pr in args.pairings:
                key = json.dumps(lr_settings(m, pr, args.lr, n_seen), sort_keys=True)
                groups.setdefault(key, []).append(pr)
            for key, prs in groups.items():
                for seed in args.seeds:
                    specs.append(dict(task=args.task, method=m, backbone=bb, pairing="+".join(prs), seed=seed,
                                      lr_settings=lr_settings(m, prs[0], args.lr, n_seen), budgets=args.budgets,
                                      patch=args.patch, batch=args.batch, degrees=args.degrees, threads=args.threads,
                                      device=args.device, eval_images=args.eval_images, eval_crop=args.eval_crop,
                                      tests=args.test, train=args.train_resolved, work=str(args.work),
                                      deadline=args.deadline, workers=args.workers, schedule=args.schedule,
                                      engine=args.engine))
    return specs


def estimate_cpu_seconds(spec: dict, n_conf: int, n_test: int) -> float:
    "A rough single-thread CPU estimate of one run, from the measured per-pass and per-test-image seconds."
    bb = spec["backbone"]
    train = CPU_PASS_SECONDS.get(bb, 1.0) * spec["budgets"][-1] * spec["batch"] * spec["patch"] ** 2 / (8 * 32 ** 2)
    px = (spec["eval_crop"] ** 2 if spec["eval_crop"] else 481 * 321) / (481 * 321)
    evals = CPU_EVAL_SECONDS.get(bb, 5.0) * px * n_conf * n_test * len(spec["budgets"])
    return train + evals


def write_csv(results: list[dict], out: Path) -> pd.DataFrame:
    df = pd.DataFrame([row for r in results for row in r["rows"]])[COLUMNS]
    df = df.sort_values(["method", "backbone", "pairing", "seed", "budget_passes", "dataset", "image", "degree"])
    df.to_csv(out / "results.csv", index=False, float_format="%.6g")
    return df


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group()
    for m in MODES: mode.add_argument(f"--{m}", dest="mode", action="store_const", const=m, help=f"the {m} preset")
    mode.add_argument("--report", nargs="+", metavar="PATH", help="re-render table and plots from results.csv files or their folders (several merge; sets that differ in patch, batch, lr, schedule, training data, test subsample or protocol, or that measured the same run differently, are refused)")
    ap.add_argument("--task", choices=TASKS, default="denoise")
    ap.add_argument("--methods", help="comma-separated: erm,dil_sf,dil_pf,dil_ss,dil_ps,lir (lir needs an LIR backbone, e.g. --backbones lir-tiny)")
    ap.add_argument("--backbones", help="comma-separated keys of dil_causal.models.BACKBONES")
    ap.add_argument("--pairings", help=f"comma-separated learning-rate pairings: {', '.join(PAIRINGS)}")
    ap.add_argument("--seeds", help="comma-separated seeds")
    ap.add_argument("--budgets", help="comma-separated training budgets in forward/backward passes, increasing")
    ap.add_argument("--lr", type=float, help="base learning rate (see the pairings)")
    ap.add_argument("--schedule", choices=("constant", "cosine", "step"), default="constant",
                    help="theta's learning-rate schedule (TrainConfig.schedule); cosine decays to 0 at the last budget, "
                         "so earlier budgets are evaluated part-way down the curve")
    ap.add_argument("--patch", type=int); ap.add_argument("--batch", type=int)
    ap.add_argument("--degrees", help="'all', or comma-separated degrees / first-seen,last-seen,first-unseen,last-unseen")
    ap.add_argument("--train", help="training image folder (default: $DIL_DATA or ../shared/data, CBSD432_jpg)")
    ap.add_argument("--train-images", type=int, help="train on a seeded subsample of this many images (0: all)")
    ap.add_argument("--test", action="append", metavar="NAME=DIR", help="a test set (repeatable; default per task)")
    ap.add_argument("--eval-images", type=int, help="seeded subsample of each test set (random.Random(0)); 0: all")
    ap.add_argument("--eval-crop", type=int, help="centre-crop test images to this side; 0: full size")
    ap.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto")
    ap.add_argument("--engine", choices=("ensemble", "process"), default="ensemble",
                    help="ensemble: runs that share method and backbone train as one vectorised ensemble (fit_many), "
                         "evaluated together; process: each run alone through fit (the same rows either way)")
    ap.add_argument("--jobs", type=int, default=1, help="runs (ensembles) trained at once in worker processes")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per run")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per run (TrainConfig.workers)")
    ap.add_argument("--out", help="output folder (default runs/generalization/<task>)")
    ap.add_argument("--work", help="checkpoint folder (default: a temporary folder, removed at the end)")
    ap.add_argument("--time-limit", type=float, default=0,
                    help="seconds: each run skips the budgets it would finish after this (0: no limit)")
    ap.add_argument("--dry-run", action="store_true", help="print the planned grid and the estimate, then stop")
    args = ap.parse_args(argv)

    if args.report:
        try: df, metas = read_results(args.report)
        except (ValueError, FileNotFoundError) as e: ap.error(str(e))
        out = Path(args.out or (args.report[0] if Path(args.report[0]).is_dir() else Path(args.report[0]).parent))
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "results.csv").exists() or len(args.report) > 1:
            df[COLUMNS].to_csv(out / "results.csv", index=False)
            (out / "meta.json").write_text(json.dumps({"merged_from": args.report, "sources": metas}, indent=1))
        report(df, out)
        print(f"rendered {out}/table.md, psnr_vs_sigma.png, gain_vs_budget.png from {len(df)} measurements")
        return

    args.mode = args.mode or "quick"
    preset = MODES[args.mode]
    for k, v in preset.items():
        if getattr(args, k, None) is None: setattr(args, k, v)
    args.methods, args.backbones = args.methods.split(","), args.backbones.split(",")
    args.pairings, args.seeds = args.pairings.split(","), [int(s) for s in str(args.seeds).split(",")]
    args.budgets = [int(b) for b in str(args.budgets).split(",")]
    if args.budgets != sorted(set(args.budgets)): ap.error(f"--budgets must increase: {args.budgets}")
    for p in args.pairings:
        try: lr_settings("erm", p, 1, 1)
        except KeyError as e: ap.error(e.args[0])
    import torch
    if args.device == "auto": args.device = "cuda" if torch.cuda.is_available() else "cpu"
    root = data_root()
    args.train_resolved = args.train or str(root / TASKS[args.task]["train"])
    args.test = [tuple(t.split("=", 1)) for t in args.test] if args.test else \
        [(n, str(root / n)) for n in TASKS[args.task]["tests"]]
    for name, folder in [("train", args.train_resolved)] + list(args.test):
        if not Path(folder).is_dir(): ap.error(f"{name} folder {folder} does not exist (set $DIL_DATA or pass it)")
    out = Path(args.out or ROOT / "runs" / "generalization" / args.task)
    out.mkdir(parents=True, exist_ok=True)
    tmp = None
    if args.work: args.work = Path(args.work); args.work.mkdir(parents=True, exist_ok=True)
    else: tmp = tempfile.TemporaryDirectory(prefix="dil-gen-"); args.work = Path(tmp.name)
    args.train_resolved = train_folder(args.train_resolved, args.train_images, args.work)

    from dil_causal.sampler import get_preset
    confs = get_preset(TASKS[args.task]["preset"])
    n_seen = sum(c.seen for c in confs)
    args.deadline = time.time() + args.time_limit if args.time_limit else 0
    specs = plan(args, n_seen)
    n_conf = len(confounders(args.task, args.degrees))
    n_test = sum(args.eval_images or 68 for _ in args.test)
    est = {s["backbone"]: estimate_cpu_seconds(s, n_conf, n_test) / 60 for s in specs}
    print(f"{args.task}: {len(specs)} runs ({', '.join(args.methods)} x {', '.join(args.backbones)} x "
          f"{', '.join(args.pairings)} x seeds {args.seeds}); budgets {args.budgets} passes; patch {args.patch}, "
          f"batch {args.batch}, lr {args.lr:g} ({args.schedule}); {args.jobs} jobs x {args.threads} threads on {args.device}")
    for s in specs:
        pps = passes_per_step(s["method"], n_seen)
        print(f"  {s['method']:7s} {s['backbone']:11s} {s['pairing']:22s} seed {s['seed']}: "
              f"{args.budgets[-1] // pps} outer steps, {s['lr_settings']}")
    total = sum(estimate_cpu_seconds(s, n_conf, n_test) for s in specs) / 60
    print("CPU estimate (1 thread, this project's 2-core machines): " +
          ", ".join(f"{bb} about {m:.0f} min per run" for bb, m in est.items()) +
          f"; about {total / max(args.jobs, 1):.0f} min in all with {args.jobs} jobs" + (" (GPU: much less)" if args.device == "cuda" else ""),
          flush=True)
    if args.dry_run: return

    commit, t0 = source_commit(), time.perf_counter()
    results, units = [], groups(specs, args.engine)
    if args.jobs <= 1:
        for unit in units:
            for r in run_specs(unit):
                results.append(r); print(f"done {r['run']}: train {r['train_seconds']} s, eval {r['eval_seconds']} s", flush=True)
            write_csv(results, out)
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=_worker_init,
                                 initargs=(args.threads,)) as pool:
            futures = [pool.submit(run_specs, u) for u in units]
            for f in as_completed(futures):
                for r in f.result():
                    results.append(r); print(f"done {r['run']}: train {r['train_seconds']} s, eval {r['eval_seconds']} s "
                                             f"({len(results)}/{len(specs)}, {time.perf_counter() - t0:.0f} s)", flush=True)
                write_csv(results, out)  # a killed grid keeps its finished runs
    wall = time.perf_counter() - t0
    df = write_csv(results, out)
    import dil_causal
    meta = dict(command="python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])),
                mode=args.mode, task=args.task, device=args.device, hardware=hardware(args.device),
                jobs=args.jobs, threads=args.threads, engine=args.engine, wall_seconds=round(wall, 1),
                settings=dict(methods=args.methods, backbones=args.backbones, pairings=args.pairings, seeds=args.seeds,
                              budgets=args.budgets, patch=args.patch, batch=args.batch, lr=args.lr,
                              schedule=args.schedule, degrees=args.degrees, eval_images=args.eval_images, eval_crop=args.eval_crop,
                              train=Path(args.train or TASKS[args.task]["train"]).name, train_images=args.train_images,
                              tests=[n for n, _ in args.test], protocol="dil", workers=args.workers),
                time_limit=args.time_limit, commit=commit,
                runs={r["run"]: {k: r[k] for k in ("train_seconds", "eval_seconds", "wall_seconds", "reached", "lr_settings")}
                      for r in results},
                versions=dict(python=platform.python_version(), torch=torch.__version__,
                              dil_causal=getattr(dil_causal, "__version__", "?"), numpy=np.__version__, pandas=pd.__version__),
                finished=time.strftime("%Y-%m-%d %H:%M:%S %Z"))
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    report(df, out)
    print(f"wrote {out}: results.csv ({len(df)} rows), table.md, psnr_vs_sigma.png, gain_vs_budget.png, meta.json "
          f"in {wall:.0f} s")
    if tmp is not None: tmp.cleanup()


if __name__ == "__main__":
    main()
