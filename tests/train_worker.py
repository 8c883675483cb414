"""Run `fit` for one or more JSON config files in turn (one process, or every rank under `accelerate launch`).

After each run every rank saves the parameters it ends with to OUTPUT_DIR/rank{R}.safetensors, so tests can
compare ranks. Running several configs in one launch saves the start-up of a launch per config.
Usage: python tests/train_worker.py CONFIG.json [CONFIG.json ...] [--resume]
"""
import json, os, sys

from safetensors.torch import save_file

from dil_causal.train import TrainConfig, fit

if __name__ == "__main__":
    rank = int(os.environ.get("RANK", 0))  # set by accelerate launch / torchrun
    for path in [a for a in sys.argv[1:] if not a.startswith("--")]:
        cfg = TrainConfig(**json.loads(open(path).read()))
        result = fit(cfg, resume="--resume" in sys.argv)
        save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
                  f"{cfg.output_dir}/rank{rank}.safetensors")
