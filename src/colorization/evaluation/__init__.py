"""Evaluation: how close colour photos come to the ground truth.

==============================  ===============================================================
:mod:`~.metrics`                PSNR, SSIM, AuC, CIEDE2000, colourfulness, ST-LPIPS, FID and their
                                accumulators (:class:`MetricSuite`)
:mod:`~.structural`             the one SSIM definition (metric and training loss)
:mod:`~.perceptual`             the optional perceptual networks (ST-LPIPS, Inception for FID)
:mod:`~.bootstrap`              bootstrap intervals over photos (FID's among them) and paired
                                differences drawn from the same resamples
:mod:`~.evaluate`               the ``colorization evaluate`` runner: models x photo groups, CSV
                                and JSON outputs, merging shards
==============================  ===============================================================

The metrics and SSIM import only :mod:`colorization.color`; the runner colorizes through
:mod:`colorization.inference`. The human rating study is :mod:`colorization.study`. The names below
load on first use.
"""

from __future__ import annotations

from colorization._lazy import lazy_exports

_EXPORTS = {
    "MetricSuite": "metrics",
    "MetricUnavailable": "metrics",
    "psnr": "metrics",
    "ssim": "metrics",
    "ciede2000": "metrics",
    "colorfulness_gap": "metrics",
    "ssim_map": "structural",
    "EvaluationConfig": "evaluate",
    "write_outputs": "evaluate",
    "merge_outputs": "evaluate",
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
