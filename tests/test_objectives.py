"""Objectives and losses: golden values, hand-computed loss values, one-batch overfits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from colorization import color
from colorization.evaluation.metrics import psnr
from colorization.evaluation.structural import gaussian_window
from colorization.models import create_model, get_config_class
from colorization.train.losses import ssim, ssim_loss
from colorization.train.objectives import (
    REGRESSION_LOSSES,
    ClassificationObjective,
    GANObjective,
    RegressionObjective,
    build_objective,
)


def tiny(name: str, **overrides) -> nn.Module:
    cfg = dataclasses.asdict(get_config_class(name).tiny())
    cfg.update(overrides)
    return create_model(name, **cfg)


def make_batch(n: int = 2, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Colourful smooth images -> normalised (l, ab)."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    imgs = []
    for _ in range(n):
        c = torch.rand(3, 3, generator=g)
        img = torch.stack([c[i, 0] * xx + c[i, 1] * yy + c[i, 2] * (1 - xx) for i in range(3)])
        imgs.append(img / img.amax().clamp_min(1e-6))
    rgb = torch.stack(imgs).clamp(0, 1)
    l_norm, ab_norm = color.rgb_to_l_ab(rgb)
    return {"l": l_norm, "ab": ab_norm}


class ConstGenerator(nn.Module):
    """Returns a fixed tensor (learnable), to check loss values by hand."""

    def __init__(self, out: torch.Tensor) -> None:
        super().__init__()
        self.out = nn.Parameter(out.clone())

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return self.out + 0 * l_norm.mean()


def overfit(objective, batch, steps: int, lr: float = 3e-3) -> tuple[dict, dict]:
    """Train on one batch; returns (first losses, last losses) per phase."""
    torch.manual_seed(0)
    opts = {p: torch.optim.Adam(objective.phase_parameters(p), lr=lr) for p in objective.all_phases}
    first, last = {}, {}
    objective.train()
    for i in range(steps):
        for phase in objective.phases:
            opts[phase].zero_grad()
            out = objective(batch, phase)
            out["loss"].backward()
            opts[phase].step()
            vals = {k: float(v.detach()) for k, v in out.items()}
            if i == 0:
                first[phase] = vals
            last[phase] = vals
    return first, last


# ---------------------------------------------------------------------------------------------
# losses.py
# ---------------------------------------------------------------------------------------------


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 24, 30, generator=g, dtype=torch.float64)
    y = (x + 0.15 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = ssim(x, y, reduction="none")
    for i in range(2):
        ref = structural_similarity(
            x[i].numpy(), y[i].numpy(), gaussian_weights=True, sigma=1.5,
            use_sample_covariance=False, data_range=1.0, channel_axis=0,
        )
        assert ours[i].item() == pytest.approx(ref, abs=1e-6)
    # SSIM is scale invariant when data_range scales too (the ab use: range 2)
    a, b = x * 2, y * 2
    assert ssim(a, b, data_range=2.0).item() == pytest.approx(ssim(x, y).item(), abs=1e-9)


def test_ssim_loss_properties_and_gradcheck():
    w = gaussian_window()
    assert w.shape == (11, 11) and w.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert w[5, 5] == w.max()
    x = torch.rand(1, 2, 16, 16, dtype=torch.float64)
    assert ssim_loss(x, x).item() == pytest.approx(0.0, abs=1e-9)
    y = torch.rand(1, 2, 12, 12, dtype=torch.float64, requires_grad=True)
    z = torch.rand(1, 2, 12, 12, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ssim(t, z), (y,))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="same shape"):
        ssim(torch.rand(1, 1, 16, 16), torch.rand(1, 2, 16, 16))


def test_psnr_hand_computed():
    # PSNR is defined once, in colorization.evaluation.metrics (the trainer logs that one).
    x = torch.zeros(2, 3, 4, 4)
    y = x.clone()
    y[0] += 0.1  # MSE 0.01 -> 20 dB
    y[1] += 0.5  # MSE 0.25 -> 6.0206 dB
    assert psnr(y, x).tolist() == pytest.approx([20.0, 10 * np.log10(4.0)], abs=1e-4)


# ---------------------------------------------------------------------------------------------
# Regression
# ---------------------------------------------------------------------------------------------


def test_regression_loss_values_by_hand():
    batch = make_batch(n=2, size=16)
    pred = batch["ab"] + 0.1 * torch.sin(torch.arange(2 * 2 * 16 * 16, dtype=torch.float32)).view(2, 2, 16, 16)
    diff = pred - batch["ab"]
    l1, mse = diff.abs().mean().item(), diff.pow(2).mean().item()
    s_rgb = ssim(color.l_ab_to_rgb(batch["l"], pred), color.l_ab_to_rgb(batch["l"], batch["ab"])).item()
    s_ab = ssim(pred, batch["ab"], data_range=2.0).item()
    expected = {
        "l1": l1,
        "mse": mse,
        "l1_ssim": l1 + 1e-3 * (1 - s_rgb),
        "mse_ssim": mse + 1e-3 * (1 - s_rgb),
        "mse_l1": mse + l1,
    }
    for loss in REGRESSION_LOSSES:
        obj = RegressionObjective(ConstGenerator(pred), loss=loss)
        out = obj(batch, "main")
        assert out["loss"].item() == pytest.approx(expected[loss], rel=1e-5), loss
        assert out["l1"].item() == pytest.approx(l1, rel=1e-5)
    obj = RegressionObjective(ConstGenerator(pred), loss="l1_ssim", ssim_weight=0.5, ssim_space="ab")
    assert obj(batch)["loss"].item() == pytest.approx(l1 + 0.5 * (1 - s_ab), rel=1e-5)
    obj = RegressionObjective(ConstGenerator(pred), loss="mse_l1", l1_weight=2.0)
    assert obj(batch)["loss"].item() == pytest.approx(mse + 2 * l1, rel=1e-5)


@pytest.mark.parametrize("loss", REGRESSION_LOSSES)
def test_regression_one_batch_overfit(loss):
    batch = make_batch()
    obj = build_objective("regression", tiny("baseline"), loss=loss, ssim_weight=1.0)
    assert obj.phases == ("main",) and obj.head == "regression"
    first, last = overfit(obj, batch, steps=30)
    assert last["main"]["loss"] < 0.5 * first["main"]["loss"], (first, last)
    pred = obj.predict(batch["l"])
    assert pred.shape == batch["ab"].shape and pred.dtype == torch.float32


def test_regression_configure_and_errors():
    obj = RegressionObjective(tiny("baseline"), loss="l1")
    obj.configure(loss="mse")
    assert obj.loss == "mse" and obj.options()["loss"] == "mse"
    with pytest.raises(ValueError, match="unknown regression loss"):
        obj.configure(loss="huber")
    with pytest.raises(ValueError, match="no stage option"):
        obj.configure(adversarial=True)
    with pytest.raises(ValueError, match="unknown option"):
        build_objective("regression", tiny("baseline"), gan_loss="lsgan")
    with pytest.raises(ValueError, match="out_channels=2"):
        RegressionObjective(ConstGenerator(torch.zeros(2, 3, 16, 16)))(make_batch(size=16))
    with pytest.raises(KeyError, match="'ab'"):
        RegressionObjective(tiny("baseline"))({"l": torch.zeros(1, 1, 16, 16)})


# ---------------------------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------------------------


def test_classification_loss_value_by_hand():
    q = color.num_ab_bins()
    batch = make_batch(n=1, size=8)
    logits = torch.randn(1, q, 8, 8, generator=torch.Generator().manual_seed(3))
    obj = ClassificationObjective(ConstGenerator(logits))
    out = obj(batch, "main")
    ab = color.denormalize_ab(batch["ab"])
    target = color.soft_encode(ab, k=5, sigma=5.0)
    ce = -(target * torch.log_softmax(logits, dim=1)).sum(1)
    w = color.rebalance_weights(lam=0.5)[color.nearest_bin(ab)]
    assert out["loss"].item() == pytest.approx((ce * w).mean().item(), rel=1e-5)
    assert out["ce"].item() == pytest.approx(ce.mean().item(), rel=1e-5)
    obj.configure(rebalance=False)
    assert obj(batch)["loss"].item() == pytest.approx(ce.mean().item(), rel=1e-5)
    # prediction = annealed mean, normalised
    pred = obj.predict(batch["l"])
    assert torch.allclose(pred, color.normalize_ab(color.annealed_mean(logits, T=0.38)), atol=1e-6)


def test_classification_one_batch_overfit():
    q = color.num_ab_bins()
    batch = make_batch()
    obj = build_objective("classification", tiny("baseline", out_channels=q))
    assert obj.head == "classification"
    first, last = overfit(obj, batch, steps=60, lr=1e-2)
    assert last["main"]["loss"] < 0.5 * first["main"]["loss"], (first, last)
    with pytest.raises(ValueError, match=f"out_channels={q}"):
        ClassificationObjective(tiny("baseline"))(batch)


def test_auxiliary_class_loss():
    batch = make_batch(n=4)
    gen = tiny("fusion", num_classes=3)
    obj = build_objective("regression", gen, loss="l1", aux_weight=0.5)
    assert obj.uses_aux
    # no labels at all -> aux term is exactly 0 (not NaN) but stays in the graph
    out = obj({**batch, "label": torch.full((4,), -1)})
    assert out["aux"].item() == 0.0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in gen.classifier.parameters())
    # labels present: aux = mean CE over labelled samples, added with its weight
    labels = torch.tensor([0, 2, -1, 1])
    gen.eval()
    with torch.no_grad():
        ab_out, class_logits = gen.forward_with_aux(batch["l"])
        out = obj({**batch, "label": labels})
    keep = labels >= 0
    ce = torch.nn.functional.cross_entropy(class_logits[keep], labels[keep])
    l1 = (ab_out - batch["ab"]).abs().mean()
    assert out["aux"].item() == pytest.approx(ce.item(), rel=1e-5)
    assert out["loss"].item() == pytest.approx(l1.item() + 0.5 * ce.item(), rel=1e-5)
    with pytest.raises(ValueError, match="out of range"):
        obj({**batch, "label": torch.tensor([0, 1, 2, 3])})
    # the auxiliary loss trains the class head
    gen.train()
    first, last = overfit(obj, {**batch, "label": labels}, steps=25)
    assert last["main"]["aux"] < 0.5 * first["main"]["aux"]


# ---------------------------------------------------------------------------------------------
# GAN
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gan_loss", ["lsgan", "vanilla"])
def test_gan_phases_losses_and_overfit(gan_loss):
    batch = make_batch()
    gen, disc = tiny("baseline"), tiny("patchgan")
    obj = build_objective("gan", gen, disc, gan_loss=gan_loss)
    assert obj.phases == ("discriminator", "generator") and obj.find_unused_parameters
    assert set(map(id, obj.phase_parameters("generator"))) == set(map(id, gen.parameters()))
    assert set(map(id, obj.phase_parameters("discriminator"))) == set(map(id, disc.parameters()))
    # the discriminator phase leaves the generator without gradients
    obj(batch, "discriminator")["loss"].backward()
    assert all(p.grad is None for p in gen.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in disc.parameters())
    # generator loss = adversarial + 100 * L1
    disc.zero_grad()
    out = obj(batch, "generator")
    assert out["loss"].item() == pytest.approx(out["g_adv"].item() + 100.0 * out["l1"].item(), rel=1e-5)
    first, last = overfit(obj, batch, steps=25, lr=2e-3)
    assert last["generator"]["l1"] < 0.5 * first["generator"]["l1"], (first, last)
    assert np.isfinite(last["discriminator"]["loss"])


def test_gan_l1_pretraining_stage():
    batch = make_batch()
    obj = build_objective("gan", tiny("baseline"), tiny("patchgan"), adversarial=False)
    assert obj.phases == ("generator",) and obj.all_phases == ("discriminator", "generator")
    out = obj(batch, "generator")
    assert set(out) == {"loss", "l1"} and out["loss"].item() == pytest.approx(out["l1"].item())
    with pytest.raises(ValueError, match="not active"):
        obj(batch, "discriminator")
    obj.configure(adversarial=True)
    assert obj.phases == ("discriminator", "generator")
    with pytest.raises(ValueError, match="needs a discriminator"):
        build_objective("gan", tiny("baseline"))
    with pytest.raises(ValueError, match="unknown gan_loss"):
        GANObjective(tiny("baseline"), tiny("patchgan"), gan_loss="wgan")
