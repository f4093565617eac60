"""Validation during training: PSNR, SSIM and colourfulness on centre crops, and sample grids."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from colorization import color, image_io
from colorization import data as cdata
from colorization.evaluation import metrics

__all__ = ["validate"]


@torch.no_grad()
def validate(
    objective: nn.Module,
    generator: nn.Module,
    dataset: Dataset,
    *,
    device: torch.device,
    batch_size: int,
    channels_last: bool,
    autocast: Callable[[], AbstractContextManager],
    sample_images: int,
    sample_path: Path,
) -> dict[str, float]:
    """Mean PSNR/SSIM (:mod:`colorization.evaluation.metrics`) and colourfulness of ``generator``'s
    predictions on ``dataset``; writes the first ``sample_images`` rows (ground truth | gray |
    prediction) to ``sample_path`` (none when ``sample_images`` is 0). ``psnr_gray`` is the PSNR of
    the gray image (the input's L with a = b = 0), so ``psnr - psnr_gray`` is the gain over gray.
    The objective is in eval mode meanwhile."""
    was_training = objective.training
    objective.eval()
    psnrs, psnrs_gray, ssims, cf_pred, cf_gt = [], [], [], [], []
    rows: list[Tensor] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    try:
        for batch in loader:
            rgb_u8 = batch["rgb"].to(device)
            l_norm, _ = cdata.batch_to_lab(rgb_u8, device)
            if channels_last:
                l_norm = l_norm.contiguous(memory_format=torch.channels_last)
            with autocast():
                ab_pred = objective.predict(l_norm, generator=generator)
            pred = color.l_ab_to_rgb(l_norm.float(), ab_pred.float())
            gt = rgb_u8.float() / 255.0
            psnrs.append(metrics.psnr(pred, gt).cpu())
            gray = color.l_ab_to_rgb(l_norm.float(), torch.zeros_like(ab_pred))
            psnrs_gray.append(metrics.psnr(gray, gt).cpu())
            ssims.append(metrics.ssim(pred, gt).cpu())
            cf_pred.append(color.colorfulness(pred).cpu())
            cf_gt.append(color.colorfulness(gt).cpu())
            if sum(r.shape[0] for r in rows) < sample_images:
                rows.append(torch.cat([gt, gray, pred], dim=3).cpu())
    finally:
        objective.train(was_training)
    result = {
        "psnr": float(torch.cat(psnrs).mean()),
        "psnr_gray": float(torch.cat(psnrs_gray).mean()),
        "ssim": float(torch.cat(ssims).mean()),
        "colorfulness_pred": float(torch.cat(cf_pred).mean()),
        "colorfulness_gt": float(torch.cat(cf_gt).mean()),
        "images": int(torch.cat(psnrs).numel()),
    }
    if rows and sample_images > 0:
        grid = torch.cat(rows, dim=0)[:sample_images]  # (N, 3, H, 3W)
        grid = torch.cat(list(grid), dim=1).clamp(0, 1)  # (3, N*H, 3W)
        image_io.save_image(image_io.tensor_to_pil(grid), sample_path, overwrite=True)
    return result
