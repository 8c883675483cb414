"""Run `fit` from a JSON config file (one process, or one rank under `accelerate launch`).

Each rank saves the parameters it ends with to OUTPUT_DIR/rank{R}.safetensors, so tests can compare ranks.
Usage: python tests/train_worker.py CONFIG.json [--resume]
"""
import json, os, sys

from safetensors.torch import save_file

from dil_causal.train import TrainConfig, fit

if __name__ == "__main__":
    cfg = TrainConfig(**json.loads(open(sys.argv[1]).read()))
    rank = int(os.environ.get("RANK", 0))  # set by accelerate launch / torchrun
    result = fit(cfg, resume="--resume" in sys.argv)
    save_file({k: v.contiguous() for k, v in result.model.state_dict().items()},
              f"{cfg.output_dir}/rank{rank}.safetensors")
