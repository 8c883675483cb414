"""Every backbone preset's training loss falls below the identity's early in training (issue #24, item 1).

A restorer that outputs its input has the identity's loss: the L1 distance between the noisy and the clean patch.
A network that cannot leave it (features that vanish through its depth, as DnCNN's under PyTorch's default
initialisation, or a residual branch that has collapsed to zero) keeps that loss however long it trains. For each
preset of `dil_causal.models.BACKBONES`: a short real ERM run (Gaussian noise σ 5-20, the `denoise` preset; Adam at
lr 1e-3), whose mean L1 training loss over its last 20 steps must be below 0.95 x the identity's on the same batches.

Measured (2 CPU cores shared with other jobs, one thread; seed 0), the loss over the identity's in the last 20 steps:
dncnn-tiny 0.76 (150 steps, batch 8, 32x32); rrdb-tiny 0.81 (300 steps; it has no input skip and starts at ~5x the
identity, crossing it after ~170-200 steps); rrdb-small 0.82 (350 steps, batch 4, 24x24; still 1.04 at 200); swinir-tiny 0.88 (100 steps);
dncnn (17 layers) on CBSD432 0.88 after 220 steps, batch 8, 32x32, under PyTorch's default initialisation 1.000
throughout (commit 9a36295's He init with the last convolution at zero; the DnCNN of before fails this test).

The 17-layer DnCNN's run took 155 s of the suite's ~14 minutes, so it is checked at its cause instead: how far the
features that reach its last convolution follow the input (`test_features_reach_the_last_convolution`). The last
convolution starts at zero, so the network leaves the identity only through what those features carry; under PyTorch's
default initialisation (weights of variance 1/(3 fan-in), uniform biases) they are the biases' constants, whatever the
image: measured on CBSD68 crops, a change of the input moves them by 4e-7 of its size, against 1.10 under the He init,
so the same 220 steps stay at 1.000 x the identity.
"""
import tempfile

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from dil_causal.data import load_images
from dil_causal.models import BACKBONES
from dil_causal.sampler import ConfounderSampler
from dil_causal.train import TrainConfig, fit, paired_patches

RATIO, LAST = 0.95, 20  # the loss over its last LAST steps must be below RATIO x the identity's

# preset -> (steps, batch, patch side, backbone_kwargs, images: "skimage" or a folder under ../shared/data)
CASES = {
    "dncnn-tiny": (150, 8, 32, {}, "skimage"),
    "rrdb-tiny": (300, 8, 32, {}, "skimage"),
    "rrdb-small": (350, 4, 24, {}, "skimage"),
    "swinir-tiny": (100, 8, 32, {}, "skimage"),
}
# The 17-layer DnCNN leaves the identity late and only with enough signal per step: on the six scikit-image photos it is
# still at 1.000 after 150 steps at batch 8, 32x32 (and after 400 at batch 4, 24x24); on CBSD432 it starts to leave after
# ~110 steps (0.967 at 150, 0.915 at 200, 0.855 at 250), at about 0.4 s a step. Checked at the cause instead (see above):
# preset -> (features moved over the input's move: the least under its own init, the most under PyTorch's default)
PROPAGATION = {"dncnn": (0.1, 1e-3), "dncnn-tiny": (0.1, 0.1)}
_LIR = ("LIR is trained with method='lir' (unpaired, adversarial; its restoration G_Y(E_X(x)) is no residual of its "
        "input), so the ERM identity test does not apply")
SKIPS = {
    "lir": _LIR,
    "lir-tiny": _LIR,
    # The paper-size presets share their initialisation code with the small ones (RRDBNet's Kaiming x 0.1 in every
    # dense block; SwinIR's trunc-normal(0.02) linear layers, zero biases, unit LayerNorms), which the cases above train.
    # A reduced override that leaves the identity within this file's budget was not found: measured, rrdb with nb=1
    # (nf 64, gc 32) at 1.08 x the identity after 150 steps (batch 4, 24x24, 28 s), swinir with one stage of 2 blocks
    # (embed 180) at 1.43 after 60 steps (18 s); the full presets are 16.6 M and 11.5 M parameters.
    "rrdb": "16.6 M parameters; its init is rrdb-tiny's and rrdb-small's code (RRDBNet), checked there; a reduced "
            "override (nb=1) is still above the identity after 150 steps (1.08), past this file's budget",
    "swinir": "11.5 M parameters; its init is swinir-tiny's code (SwinIR), checked there; a reduced override (one stage "
              "at embed 180) is still above the identity after 60 steps (1.43), past this file's budget",
}


def test_every_preset_has_a_case_or_a_reason():
    trained = set(CASES) | set(SKIPS)
    assert set(BACKBONES) <= trained | set(PROPAGATION), f"presets without a case: {sorted(set(BACKBONES) - trained)}"
    assert not set(CASES) & set(SKIPS) and not set(PROPAGATION) & set(SKIPS)


@pytest.mark.parametrize("name", sorted(PROPAGATION))
def test_features_reach_the_last_convolution(name, shared_data):
    """A DnCNN's last convolution starts at zero: what it can learn is what its features say about the input. Two noise
    draws on the same CBSD68 crops: the features entering the last convolution must move by at least `least` x the
    input's move under the preset's initialisation, and by at most `most` x under PyTorch's default (the DnCNN of before
    commit 9a36295), so the measure tells the two apart."""
    least, most = PROPAGATION[name]
    images = load_images(str(shared_data / "CBSD68"))
    g = torch.Generator().manual_seed(0)
    clean = torch.stack([x[:, :32, :32] for x in list(images.values())[:8]])
    y = clean + 25 / 255 * torch.randn(clean.shape, generator=g)
    move = 10 / 255 * torch.randn(clean.shape, generator=g)
    rms = lambda t: t.pow(2).mean().sqrt().item()
    moved = {}
    for init in ("preset", "default"):
        torch.manual_seed(0)
        model = BACKBONES[name]()
        if init == "default":
            for m in model.modules():
                if isinstance(m, torch.nn.Conv2d): m.reset_parameters()
        if init == "preset": assert not model.tail.weight.any()  # its noise estimate starts at 0
        with torch.no_grad():
            features = lambda x: model.body(model.head(x))
            moved[init] = rms(features(y + move) - features(y)) / rms(move)
    print(f"{name}: features move {moved['preset']:.3g} x the input under its init, {moved['default']:.2g} under the default")
    assert moved["preset"] > least, f"{name}: its features follow the input by only {moved['preset']:.3g} (> {least} expected)"
    assert moved["default"] < most, f"{name}: the default init's features follow the input by {moved['default']:.3g}"


def identity_losses(cfg: TrainConfig, images: dict) -> torch.Tensor:
    "The identity's L1 loss (noisy against clean) on each of `fit`'s training batches of `cfg`, in order."
    ds = paired_patches(cfg, images, ConfounderSampler(cfg.confounder_list()), cfg.steps * cfg.batch_size, ("pooled",))
    return torch.tensor([F.l1_loss(b["pooled"], b["clean"]).item()
                         for b in DataLoader(ds, batch_size=cfg.batch_size, shuffle=False, drop_last=True)])


@pytest.mark.parametrize("name", sorted(set(CASES) | set(SKIPS)))
def test_training_loss_leaves_the_identity(name, request):
    if name in SKIPS: pytest.skip(SKIPS[name])
    steps, batch, patch, kwargs, source = CASES[name]
    if source == "skimage": data = "skimage"
    else: data = str(request.getfixturevalue("shared_data") / source)
    images = load_images(data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with tempfile.TemporaryDirectory() as d:
            cfg = TrainConfig(method="erm", backbone=name, backbone_kwargs=kwargs, confounders="denoise", data=data,
                              lr=1e-3, steps=steps, batch_size=batch, patch_size=patch, log_every=1, progress=False,
                              output_dir=d, seed=0)
            result = fit(cfg, images=images)
        loss = torch.tensor(result.history["loss"].values, dtype=torch.float64)
        identity = identity_losses(cfg, images).double()
    finally: torch.set_num_threads(threads)
    assert len(loss) == len(identity) == steps
    ratio = (loss[-LAST:].mean() / identity[-LAST:].mean()).item()
    print(f"{name}: loss / identity over the last {LAST} of {steps} steps = {ratio:.3f}")
    assert ratio < RATIO, (f"{name}: after {steps} ERM steps at lr 1e-3 its training loss is {ratio:.3f} x the "
                           f"identity's (noisy vs clean) over the last {LAST} steps; it should be below {RATIO}")
