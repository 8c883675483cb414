"""The mechanism diagnostics (Mohan et al., ICLR 2020) on every final model of a study store.

    python bench/diagnose_store.py bench/results/study-cpu-denoise-dncnn-tiny
    python bench/diagnose_store.py STORE --work /path/to/work --data ../shared/data

For each final unit whose model file is in the store's work folder (`models/<unit name>.safetensors`), it measures on
the first test set of the store's task, loaded as the study loads it, at the task's noise levels: the noise the model
removes, `y - f(y)`, against the true sigma, and its distance from scale equivariance, ||f(a y) - a f(y)|| / ||a f(y)||
(`dil_causal.diagnostics.mechanism_table`). It writes STORE/diagnostics.json (atomically) and prints the mean per arm and
sigma. Units whose model file is absent are listed as missing in the JSON; with --retrain they are trained again from
their records (one thread each, as the study trains them) and used only where their test scores reproduce the record's.
"""
import argparse

import pandas as pd

from dil_causal.diagnostics import DIAGNOSTICS, diagnose_store


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("store", help="a study store (its study.json and units/)")
    p.add_argument("--work", default=None, help="the store's work folder (default: dil_causal.study.default_work(STORE))")
    p.add_argument("--data", default=None, help="the data root with the task's test sets (default: $DIL_DATA or ../shared/data)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--retrain", action="store_true", help="train a final unit whose model file is missing again from its record")
    args = p.parse_args(argv)
    out = diagnose_store(args.store, work=args.work, data=args.data, progress=not args.no_progress, retrain=args.retrain)
    print(f"{args.store}/{DIAGNOSTICS}: {len(out['models'])} models on {out['test_set']} ({out['images']} images), "
          f"{len(out['missing'])} missing, {len(out['retrained'])} trained again")
    if out["summary"]:
        table = pd.DataFrame(out["summary"]).pivot_table(index="sigma", columns="arm", values=["ratio", "equivariance"])
        print(table.round(3).to_string())


if __name__ == "__main__":
    main()
