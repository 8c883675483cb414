"""Many runs on one device: aggregate training throughput of a vectorised ensemble against the alternatives.

For M members of one backbone (default M = 1, 4, 16, 64) it measures aggregate forward/backward passes per second of
  - the ensemble (`dil_causal.ensemble`: stacked parameters, vmap(grad), Adam on the stacked tensors),
  - M sequential single runs (the trainer's own step functions on one model, one run after the other),
  - M concurrent processes (each a single run, all started together),
  - and, as the bound, one dense model at batch M x B (what the device does with no per-model overhead),
all on the same device in the same run, on synthetic batches already on the device (the engines, not the data
pipeline: each member's data costs the same in every engine). `--method` picks ERM (one pass per step) or DIL_sf
(four). GPU levers, each reported on its own line when asked: `--bf16` (autocast), `--channels-last` (the single and
dense models), `--cudnn-benchmark`, `--compile` (torch.compile mode="reduce-overhead" of the single and dense steps:
CUDA graphs). `--end-to-end` also times `fit_many` against M sequential `fit` runs with real data.

Usage: python bench/ensemble.py [--device cpu|cuda] [--backbone rrdb-tiny] [--members 1,4,16,64] [--method erm]
                                [--patch 32] [--batch 8] [--seconds 6] [--threads 2] [--bf16] [--processes]
                                [--end-to-end] [--time-limit 170]
"""
import argparse, contextlib, json, multiprocessing as mp, os, statistics, sys, tempfile, time

import torch
import torch.nn.functional as F
from torch.func import stack_module_state

from dil_causal.ensemble import ENSEMBLE_STEPS, Ensemble, StackedAdam, fit_many
from dil_causal.models import build
from dil_causal.train import METHODS, fit


def sync(device):
    if device.type == "cuda": torch.cuda.synchronize()


def autocast(device, bf16: bool):
    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext


def batch(m, args, device, g):
    "A synthetic batch of m members (m=0: one model): clean, pooled, views and targets with the method's shapes."
    lead = (m,) if m else ()
    clean = torch.rand(*lead, args.batch, 3, args.patch, args.patch, generator=g).to(device)
    out = {"clean": clean, "pooled": (clean + 0.05 * torch.randn(clean.shape, generator=g).to(device)).clamp(0, 1)}
    views = torch.stack([(clean + s / 255 * torch.randn(clean.shape, generator=g).to(device)).clamp(0, 1)
                         for s in (5, 10, 15, 20)], dim=len(lead))
    out["views"], out["targets"] = views, clean.unsqueeze(len(lead)).expand_as(views).contiguous()
    return out


def timed(step, device, seconds: float, passes_per_step: int) -> float:
    "Passes per second of `step()` over about `seconds` after two warm-up steps."
    for _ in range(2): step()
    sync(device); t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds or n < 3:
        step(); n += 1
    sync(device)
    return n * passes_per_step / (time.perf_counter() - t0)


def ensemble_rate(M, args, device) -> float:
    nets = [build(args.backbone).to(device) for _ in range(M)]
    theta = {k: v.detach().clone() for k, v in stack_module_state(nets)[0].items()}
    from dil_causal.train import TrainConfig
    cfgs = [TrainConfig(method=args.method, lr=1e-4, inner_lr=1e-4, output_dir=f"m{k}") for k in range(M)]
    lr = torch.full((M,), 1e-4)
    sf = args.method == "dil_sf"
    phi = {k: v.clone() for k, v in theta.items()} if sf else None
    e = Ensemble(build(args.backbone).to(device), theta, StackedAdam(theta, lr), cfgs,
                 [torch.Generator().manual_seed(k) for k in range(M)], autocast(device, args.bf16), phi,
                 StackedAdam(phi, lr, (0.0, 0.999)) if sf else None)
    b = batch(M, args, device, torch.Generator().manual_seed(0))
    step = ENSEMBLE_STEPS[args.method]
    return timed(lambda: step(e, b), device, args.seconds, 4 if sf else 1)


def single_step(args, device, m_batch: int = 1, channels_last=False, compile_=False):
    "One model's training step (the trainer's own step function) on a batch of m_batch x B; (step, passes)."
    from accelerate import Accelerator
    from dil_causal.train import TrainConfig, TrainState
    cfg = TrainConfig(method=args.method, lr=1e-4, inner_lr=1e-4, batch_size=args.batch * m_batch)
    acc = Accelerator(cpu=device.type == "cpu")  # precision: the autocast around the step below (one Accelerator per process)
    net = build(args.backbone).to(device).to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    rec = METHODS[args.method]
    s = TrainState(acc, net, None, cfg, rec.setup(cfg, net, device), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    bs = [batch(0, argparse.Namespace(**{**vars(args), "batch": args.batch * m_batch}), device, g) for _ in range(1)]
    b = {"clean": bs[0]["clean"], "pooled": bs[0]["pooled"], "views": bs[0]["views"].transpose(0, 1)}
    fn = torch.compile(rec.step, mode="reduce-overhead") if compile_ else rec.step
    cast = autocast(device, args.bf16)
    def step():
        with cast(): return fn(s, b)
    return step, rec.passes(4)


def sequential_rate(M, args, device) -> float:
    "M single runs one after the other: each run's rate is the single-run rate, so M of them take M times as long."
    step, passes = single_step(args, device, channels_last=args.channels_last, compile_=args.compile)
    return timed(step, device, args.seconds, passes)  # aggregate over M sequential runs = one run's rate


def dense_rate(M, args, device) -> float:
    step, passes = single_step(args, device, m_batch=M, channels_last=args.channels_last, compile_=args.compile)
    return M * timed(step, device, args.seconds, passes)  # M members' worth of samples per step


def _process(args_dict, device_type, q):
    args = argparse.Namespace(**args_dict)
    torch.set_num_threads(max(1, args.threads // args.nproc))
    step, passes = single_step(args, torch.device(device_type))
    q.put(timed(step, torch.device(device_type), args.seconds, passes))


def process_rate(M, args, device) -> float:
    "M concurrent processes, each a single run; the sum of their rates."
    ctx, q = mp.get_context("spawn"), mp.get_context("spawn").Queue()
    ps = [ctx.Process(target=_process, args=({**vars(args), "nproc": M}, device.type, q)) for _ in range(M)]
    for p in ps: p.start()
    rates = [q.get(timeout=600) for _ in ps]
    for p in ps: p.join()
    return sum(rates)


def end_to_end(M, args, device) -> tuple[float, float]:
    "Wall seconds of fit_many for M members against M sequential fit runs, with real data (the embedded photos)."
    common = dict(method=args.method, backbone=args.backbone, patch_size=args.patch, batch_size=args.batch,
                  steps=args.e2e_steps, lr=1e-4, inner_lr=1e-4, log_every=args.e2e_steps, progress=False,
                  cpu=device.type == "cpu", mixed_precision="bf16" if args.bf16 else "no")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        fit_many([dict(common, seed=k, output_dir=f"{tmp}/e{k}") for k in range(M)], progress=False)
        ens = time.perf_counter() - t0
        t0 = time.perf_counter()
        for k in range(M): fit(**common, seed=k, output_dir=f"{tmp}/s{k}")
        return ens, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--backbone", default="rrdb-tiny")
    ap.add_argument("--method", default="erm", choices=list(ENSEMBLE_STEPS), help="erm (1 pass/step) or dil_sf (4) or dil_pf")
    ap.add_argument("--members", default="1,4,16,64", help="comma-separated ensemble sizes M")
    ap.add_argument("--patch", type=int, default=32); ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=6.0, help="timed seconds per measurement")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (all engines)")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast in every engine")
    ap.add_argument("--channels-last", action="store_true", help="channels-last single and dense models")
    ap.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    ap.add_argument("--compile", action="store_true", help='torch.compile(mode="reduce-overhead") of the single and dense steps')
    ap.add_argument("--processes", action="store_true", help="also time M concurrent processes (M <= 16)")
    ap.add_argument("--end-to-end", action="store_true", help="also time fit_many against sequential fit with real data")
    ap.add_argument("--e2e-steps", type=int, default=30, help="outer steps of each run in --end-to-end")
    ap.add_argument("--time-limit", type=float, default=0, help="skip measurements that would start after this many seconds")
    ap.add_argument("--levers", action="store_true", help="also one line per GPU lever (bf16, channels-last, cudnn.benchmark, "
                    "compile) at the largest M, each against the same engines")
    ap.add_argument("--lever-names", default="fp32,bf16,channels-last,cudnn.benchmark,compile", help="which levers --levers times")
    ap.add_argument("--json", default="", help="also write the figures to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if device.type == "cuda": torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    hw = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {args.threads} threads"
    start = time.perf_counter()
    print(f"torch {torch.__version__}, {hw}, {args.backbone}, {args.method}, batch {args.batch}x3x{args.patch}x{args.patch}, "
          f"{'bf16' if args.bf16 else 'fp32'}{', channels-last' if args.channels_last else ''}"
          f"{', cudnn.benchmark' if args.cudnn_benchmark else ''}{', compiled' if args.compile else ''}")
    print(f"\n{'M':>4s} {'ensemble':>10s} {'sequential':>11s} {'processes':>10s} {'dense bound':>12s} "
          f"{'ens/seq':>8s} {'ens/proc':>9s} {'ens/dense':>10s}   (aggregate passes/s)")
    rows = []
    for M in map(int, args.members.split(",")):
        if args.time_limit and time.perf_counter() - start > args.time_limit: print(f"{M:4d} skipped (time limit)"); continue
        r = {"M": M, "ensemble": ensemble_rate(M, args, device), "sequential": sequential_rate(M, args, device),
             "dense": dense_rate(M, args, device)}
        r["processes"] = process_rate(M, args, device) if args.processes and M <= 16 else float("nan")
        rows.append(r)
        print(f"{M:4d} {r['ensemble']:10.1f} {r['sequential']:11.1f} {r['processes']:10.1f} {r['dense']:12.1f} "
              f"{r['ensemble'] / r['sequential']:8.2f} {r['ensemble'] / r['processes']:9.2f} {r['ensemble'] / r['dense']:10.2f}",
              flush=True)
    if args.levers:
        M = max(int(m) for m in args.members.split(","))
        print(f"\nlevers at M = {M}: {'lever':16s} {'ensemble':>10s} {'sequential':>11s} {'dense':>9s} {'ens/seq':>8s} {'ens/dense':>10s}")
        levers = {"fp32": {}, "bf16": {"bf16": True}, "channels-last": {"channels_last": True},
                  "cudnn.benchmark": {"cudnn_benchmark": True}, "compile": {"compile": True}}
        for name in args.lever_names.split(","):
            kw = levers[name]
            a = argparse.Namespace(**{**vars(args), **kw})
            torch.backends.cudnn.benchmark = a.cudnn_benchmark
            try: r = {"ensemble": ensemble_rate(M, a, device), "sequential": sequential_rate(M, a, device), "dense": dense_rate(M, a, device)}
            except Exception as ex: print(f"{'':18s}{name:16s} failed: {type(ex).__name__}: {str(ex).splitlines()[0][:120]}"); continue
            print(f"{'':18s}{name:16s} {r['ensemble']:10.1f} {r['sequential']:11.1f} {r['dense']:9.1f} "
                  f"{r['ensemble'] / r['sequential']:8.2f} {r['ensemble'] / r['dense']:10.2f}", flush=True)
            rows.append({"lever": name, "M": M, **r})
        torch.backends.cudnn.benchmark = args.cudnn_benchmark
    if args.end_to_end:
        M = max(int(m) for m in args.members.split(","))
        ens, seq = end_to_end(M, args, device)
        print(f"\nend to end, {M} members x {args.e2e_steps} steps with real data: fit_many {ens:.1f} s, "
              f"{M} sequential fit runs {seq:.1f} s -> {seq / ens:.2f}x")
        rows.append({"end_to_end": {"M": M, "fit_many_s": ens, "sequential_fit_s": seq}})
    if args.json:
        with open(args.json, "w") as f: json.dump({"hardware": hw, "torch": torch.__version__, "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
