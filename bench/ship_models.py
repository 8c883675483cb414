"""Ship the decisive study's trained denoisers inside the package, each with a model card.

From a finished CPU study (a store of `dil_causal.study`), per shipped name it takes one final run — the seed with the best final
SEEN-degree validation PSNR (never a test image) — copies its model file (the EMA weights) into dil_causal/pretrained/
and writes NAME.json beside it: how it was trained (the study command, the fit() configuration, data, commit,
hardware) and what it measures on CBSD68 (all 68 images, full size, DIL protocol: PSNR per sigma, and the noisy
input's), measured with the same code as `dil-causal eval -n NAME --data CBSD68`. A card names its data as a registered
set with digests of the files used (`data_record`), and says where the shipped seed stands among its arm's seeds on
the study's own test (`standing`): the pair illustrates, the study decides.

  erm-denoise-tiny      the study's tuned ERM
  dil_sf-denoise-tiny   the study's tuned DIL_sf (the content setting whose final validation was better)

  erm_bias_free-narrow-dncnn-tiny   ERM bias-free of the oracle study cpu-narrow-dncnn-tiny (σ 5 and 10 seen)
  dil_sf-narrow-rrdb-tiny           DIL_sf of the oracle study cpu-narrow-rrdb-tiny (σ 5 and 10 seen), where DIL_sf
                                    recovers part of the oracle gap (4 %, 2 to 7 %, 5 seeds)

A CSV result set of the former one-sitting script (final_curves.csv, meta.json; --study) ships the pair above; a store
(--store, with --arm and --name) ships one arm's seed, its model file taken from the store's work folder
(`WORK/models/<unit name>.safetensors`, kept for every final unit), its card filled from the unit's record.

Usage: python bench/ship_models.py --study bench/results/study-cpu-denoise --work /work/study/work-cpu [--data ../shared/data]
       python bench/ship_models.py --store bench/results/study-cpu-narrow-dncnn-tiny --arm "ERM bias-free" \
           --name erm_bias_free-narrow-dncnn-tiny [--work DIR] [--data ../shared/data]
       python bench/ship_models.py --refresh [--study STORE]   # rewrite the shipped cards' data and standing only
"""
import argparse, json, os, shutil
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA_SENTENCE = "CBSD432 (432 BSDS500 JPEGs, CBSD68 excluded), 5 % held out for validation"


def data_record(folder, val: float, description: str = DATA_SENTENCE) -> dict:
    "The card's `data`: the registered set, and digests of all its files, the training part and the held-out validation part."
    from dil_causal.data import data_digest, image_files
    from dil_causal.models import registered_set
    from dil_causal.train import held_out
    names = [f.name for f in image_files(folder)]
    val_names = held_out(names, val)
    train_names = sorted(set(names) - set(val_names))
    if registered_set(folder) is None: raise ValueError(f"{folder} is not a registered set (dil_causal.data.DATASETS): a card names its data by set")
    return {"set": registered_set(folder), "description": description, "images": len(names), "digest": data_digest(folder),
            "train": {"images": len(train_names), "digest": data_digest(folder, train_names)},
            "val": {"fraction": val, "images": len(val_names), "digest": data_digest(folder, val_names)}}


def study_tests(study: Path) -> tuple[pd.DataFrame, str, dict]:
    "A study's test scores (arm, seed, dataset, degree, seen, psnr, weights), what they were read from, and its settings."
    if (study / "final_tests.csv").exists():  # a CSV result set of the study's former one-sitting script
        return pd.read_csv(study / "final_tests.csv"), "final_tests.csv", json.loads((study / "meta.json").read_text()).get("settings", {})
    from dil_causal.study import results  # a store of dil_causal.study: one record per unit
    return results(study).tests, "units/*.json", json.loads((study / "study.json").read_text())["study"]


def standing(study, arm: str, seed: int, dataset: str = "CBSD68") -> dict:
    """Where `seed` of `arm` sits among the arm's seeds on the study's test set `dataset` (final weights): its mean PSNR
    over the unseen and over the seen degrees, beside the arm's mean and 95 % t-interval half-width over the seeds."""
    from dil_causal.study import t_interval
    study = Path(study)
    t, source, settings = study_tests(study)
    t = t[(t.arm == arm) & (t.dataset == dataset) & (t.weights == "final")]
    if seed not in set(t.seed): raise ValueError(f"{study}: no final run of {arm} seed {seed} on {dataset}")
    store = study.resolve().relative_to(ROOT).as_posix() if study.resolve().is_relative_to(ROOT) else str(study)
    out = {"source": {"store": store, "file": source, "arm": arm, "seeds": sorted(int(s) for s in set(t.seed)),
                      "dataset": dataset, "weights": "final",
                      "test": f"{settings.get('eval_images', '?')} seeded {settings.get('eval_crop', '?')}-px centre crops of {dataset}"},
           "seed": int(seed)}
    for key, seen in (("unseen", False), ("seen", True)):
        part = t[t.seen == seen]
        per = part.groupby("seed").psnr.mean()
        n = len(per)
        out[key] = {"degrees": sorted(int(d) for d in set(part.degree)), "seed_psnr": float(per[seed]), "arm_mean": float(per.mean()),
                    "arm_ci95": t_interval(per.values)[1],  # the study's own 95 % t-interval
                    "rank": int((per > per[seed]).sum() + 1), "of": n}
    return out


def refresh(study, data_root, dest=None):
    """Rewrite the shipped cards' `data` (set and digests; `fit_config.data` the set's name) and `standing`, nothing else.
    A card's standing is recomputed from the store it names (`standing.source.store`); `study` serves a card that names none."""
    from dil_causal.data import find_dataset
    from dil_causal.models import read_card
    dest = Path(dest or ROOT / "dil_causal" / "pretrained")
    for path in sorted(dest.glob("*.json")):
        card = read_card(path)
        name = card["data"]["set"]
        card["data"] = data_record(find_dataset(name, data_root), card["fit_config"]["val"], card["data"]["description"] or DATA_SENTENCE)
        card["fit_config"]["data"] = name
        own = (card.get("standing") or {}).get("source", {}).get("store")
        if not (own or study): raise ValueError(f"{path.name} names no study store: pass --study")
        card["standing"] = standing(ROOT / own if own else study, card["arm"], card["seed"], card["standing"]["source"]["dataset"] if own else "CBSD68")
        path.write_text(json.dumps(card, indent=1) + "\n")
        print(f"refreshed {path.name}: {name} {card['data']['digest'][:12]}, {standing_text(card['standing'])}")


def standing_text(s: dict) -> str:
    return "; ".join(f"{k} {s[k]['seed_psnr']:.2f} dB (arm {s[k]['arm_mean']:.2f} ± {s[k]['arm_ci95']:.2f}, rank {s[k]['rank']} of {s[k]['of']})"
                     for k in ("unseen", "seen"))


def card_psnr(model_file, folder, confounders) -> tuple[dict, dict]:
    """PSNR of a model file on every image of `folder` (full size, DIL protocol) at each confounder, and of the
    distorted input: what `dil-causal eval` measures (`eval_checkpoint` calls `evaluate` on the same images with the same
    arguments), at the degrees given rather than a preset's, as the card's {"sigma": mean dB} pair."""
    from dil_causal.cli import _test_images
    from dil_causal.evaluate import evaluate
    from dil_causal.models import load_model
    images = _test_images(str(folder), None)
    mean = lambda df: {str(float(d)): float(v) for d, v in df.groupby("degree", sort=False).psnr.mean().items()}
    run = lambda model: evaluate(model, images, confounders, protocol="dil", crop_border=0, dataset=str(folder), metrics=("psnr",),
                                 progress=False)
    return mean(run(load_model(model_file))), mean(run(None))


def eval_command(name: str, task: str = "denoise") -> str:
    "The command that reproduces a card's CBSD68 scores: `dil-causal eval` under the preset of the task's degrees."
    import inspect
    from dil_causal.cli import eval_checkpoint
    from dil_causal.confounders import PRESETS
    from dil_causal.study import TASKS
    if PRESETS.get(task) != TASKS[task].confounder_list():
        raise ValueError(f"task {task!r} has no confounder preset of the same degrees: `dil-causal eval` could not reproduce its card")
    default = inspect.signature(eval_checkpoint).parameters["preset"].default  # what `eval` tests without --preset
    return f"dil-causal eval -n {name} --data CBSD68" + ("" if task == default else f" --preset {task}")


def ship_from_store(store, arm: str, name: str, work=None, data_root=None, dest=None) -> dict:
    """Ship one seed of `arm` from a study store as `name`: of the arm's final seeds, the one whose last validation (the
    last point of its record's `curve`: seen degrees, held-out training images) is best; never a test image. Copies
    `work/models/<unit name>.safetensors` (the final EMA weights) and writes the card from the unit's record."""
    from dataclasses import asdict
    from dil_causal.data import data_digest, find_dataset
    from dil_causal.models import load_model, n_parameters, read_record
    from dil_causal.study import TASKS, read_store
    from dil_causal.study.running import default_work
    from dil_causal.train import TrainConfig
    store = Path(store)
    view = read_store(store)
    study = view.store.study
    finals = [r for r in view.records.values() if r["unit"]["stage"] == "final" and r["unit"]["arm"] == arm]
    if not finals: raise ValueError(f"{store}: no final unit of arm {arm!r} (arms: {', '.join(study.arms)})")
    best = max(finals, key=lambda r: r["curve"][-1]["val_psnr"])
    work = Path(work) if work else default_work(store)
    src = work / "models" / f"{best['name']}.safetensors"
    if not src.is_file(): raise FileNotFoundError(f"{src}: the final model of {best['name']} is not in the work folder {work}")
    folder = find_dataset(best["data"]["train"], data_root)
    if data_digest(folder) != best["data"]["digest"]:
        raise ValueError(f"{folder} is not the data {best['name']} was trained on (digest {best['data']['digest'][:12]})")
    dest = Path(dest or ROOT / "dil_causal" / "pretrained")
    dest.mkdir(exist_ok=True)
    out = dest / f"{name}.safetensors"
    shutil.copyfile(src, out)
    # the fit() configuration the unit ran (dil_causal.study.unit._setup: its config, the data, logs and checkpoints at each validation)
    fit = asdict(TrainConfig.from_dict(dict(best["config"], data=best["data"]["train"], progress=False,
                                            log_every=best["config"]["val_every"], ckpt_every=best["config"]["val_every"])))
    fit = json.loads(json.dumps({k: v for k, v in fit.items() if k not in ("output_dir", "progress")}))  # tuples as lists
    task = TASKS[study.task]
    seen = [c.degree for c in task.confounder_list() if c.seen]
    psnr, psnr_input = card_psnr(out, find_dataset("CBSD68", data_root), task.confounder_list())
    rec, seed = read_record(out), int(best["unit"]["seed"])
    rates = ", ".join(f"{k} {v:g}" for k, v in best["unit"]["rates"])
    sentence = (f"of the study's {len(finals)} final seeds, the best final seen-degree validation PSNR "
                f"({fit['val'] * 100:g} % of {best['data']['train']} held out, {task.seen}); the rate ({rates}) was selected "
                "the same way by the study's sweep and refinement")
    card = dict(name=name, method=fit["method"], content=fit["content"], backbone=fit["backbone"],
                parameters=n_parameters(load_model(out)), weights=rec.get("weights"), arm=arm, seed=seed, selection=sentence,
                command=f"dil-causal study run {store.resolve().relative_to(ROOT).as_posix() if store.resolve().is_relative_to(ROOT) else store}",
                fit_config=fit, data=data_record(folder, fit["val"]), commit=best["commit"], hardware=best["hardware"],
                torch=best["torch"], protocol="dil (test noise seeded 0 per image, clipped to [0, 1])",
                psnr_cbsd68=psnr, psnr_input_cbsd68=psnr_input,
                seen_sigmas=[int(d) if float(d).is_integer() else d for d in seen], eval_command=eval_command(name, study.task),
                standing=standing(store, arm, seed))
    (dest / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
    print(f"shipped {name}: {arm} seed {seed} ({best['name']}; final validation {best['curve'][-1]['val_psnr']:.3f} dB), "
          f"PSNR on CBSD68 {card['psnr_cbsd68']}")
    return card


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", help="a CSV result set of the former one-sitting script (final_curves.csv, meta.json); "
                    "--refresh: the study of any card whose standing names none")
    ap.add_argument("--store", help="a study store (dil_causal.study) to ship one arm's seed from, with --arm and --name")
    ap.add_argument("--arm"); ap.add_argument("--name")
    ap.add_argument("--work", help="the runs' work folder (--store: default the store's, dil_causal.study.running.default_work)")
    ap.add_argument("--data", default=os.environ.get("DIL_DATA") or str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--refresh", action="store_true", help="only rewrite the shipped cards' data digests and standing")
    args = ap.parse_args(argv)
    if args.refresh: return refresh(args.study, args.data)
    if args.store:
        if not (args.arm and args.name): ap.error("--store needs --arm and --name")
        return ship_from_store(args.store, args.arm, args.name, args.work, args.data)
    if not args.study: ap.error("pass --study (a CSV result set) or --store (a study store)")
    if not args.work: ap.error("--work is needed to ship models (or pass --refresh)")
    from dil_causal.cli import eval_checkpoint
    from dil_causal.models import load_model, n_parameters, read_record
    from dil_causal.sampler import as_confounders
    study, work, dest = Path(args.study), Path(args.work), ROOT / "dil_causal" / "pretrained"
    curves, meta = pd.read_csv(study / "final_curves.csv"), json.loads((study / "meta.json").read_text())
    final_val = curves.sort_values("passes").groupby("name").tail(1)
    dil_arm = final_val[final_val.arm.str.startswith("DIL")].groupby("arm").val_psnr.mean().idxmax()
    dest.mkdir(exist_ok=True)
    for name, arm in (("erm-denoise-tiny", "ERM"), ("dil_sf-denoise-tiny", dil_arm)):
        best = final_val[final_val.arm == arm].sort_values("val_psnr", ascending=False).iloc[0]
        run = work / best["name"]
        cfg = json.loads((run / "config.json").read_text())
        shutil.copyfile(run / "model.safetensors", dest / f"{name}.safetensors")
        table = eval_checkpoint(str(dest / f"{name}.safetensors"), data=str(Path(args.data) / "CBSD68"), metrics="psnr")
        rec = read_record(dest / f"{name}.safetensors")
        card = dict(name=name, method=cfg["method"], content=cfg.get("content"), backbone=cfg["backbone"],
                    parameters=n_parameters(load_model(dest / f"{name}.safetensors")), weights=rec.get("weights"),
                    arm=arm, seed=int(best["seed"]), selection="of the study's final seeds, the best final seen-degree "
                    "validation PSNR (5 % of CBSD432 held out); the rate was selected the same way in the sweep",
                    command=meta["parts"]["all"]["command"],
                    fit_config={**{k: v for k, v in cfg.items() if k not in ("output_dir", "progress")}, "data": Path(cfg["data"]).name},
                    data=data_record(cfg["data"], cfg["val"]), standing=standing(study, arm, int(best["seed"])),
                    commit=meta["parts"]["all"]["commit"], hardware=meta["parts"]["all"]["hardware"],
                    torch=meta["parts"]["all"]["torch"], protocol="dil (test noise seeded 0 per image, clipped to [0, 1])",
                    psnr_cbsd68={str(float(r.degree)): float(r.psnr) for r in table.itertuples()},
                    psnr_input_cbsd68={str(float(r.degree)): float(r.input_psnr) for r in table.itertuples()},
                    seen_sigmas=[int(c.degree) for c in as_confounders(cfg["confounders"]) if c.seen],
                    eval_command=eval_command(name))
        card["fit_config"]["data"] = card["data"]["set"]
        (dest / f"{name}.json").write_text(json.dumps(card, indent=1) + "\n")
        print(f"shipped {name}: {arm} seed {card['seed']}, PSNR on CBSD68 {card['psnr_cbsd68']}")


if __name__ == "__main__":
    main()
