"""The temporal stabiliser, the synthetic clips and the stability measures (no network involved)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colorization import color
from colorization.evaluation.video_quality import cdc, chroma, frame_psnr, warp_error
from colorization.video import StabilizerConfig, TemporalStabilizer
from colorization.video.stabilize import track_points
from colorization.video.synthetic import CLIP_KINDS, make_clip


def photo(seed: int, h: int = 120, w: int = 160) -> np.ndarray:
    """A smooth random colour photo (blurred noise), (h, w, 3) uint8."""
    import cv2

    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 4)
    x = (x - x.min((0, 1))) / (np.ptp(x, (0, 1)) + 1e-6)
    return (x * 220 + 20).astype(np.uint8)


def lab_inputs(frame: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(1,h,w) normalised L and (2,h,w) normalised ab of an RGB uint8 frame."""
    lab = color.rgb_to_lab(torch.from_numpy(frame).permute(2, 0, 1).float() / 255)
    return color.normalize_l(lab[:1]), color.normalize_ab(lab[1:])


def to_rgb(l_norm: torch.Tensor, ab_norm: torch.Tensor) -> np.ndarray:
    lab = torch.cat([color.denormalize_l(l_norm), color.denormalize_ab(ab_norm)])
    return (color.lab_to_rgb_in_gamut(lab).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("kind", CLIP_KINDS)
def test_synthetic_clips_shapes_and_exact_maps(kind):
    clip = make_clip(kind, photo(0), photo(1), frames=12, size=(64, 48))
    assert len(clip.frames) == len(clip.maps) == 12
    assert all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in clip.frames)
    assert clip.maps[0] is None and (clip.cuts == [6] if kind == "cut" else clip.cuts == [])
    assert clip.gray()[0].shape == (48, 64)
    # the ground truth, warped by the exact maps, barely changes (only resampling blur), except in the
    # kinds whose colours really change
    assert warp_error(clip.frames, clip.maps) < (1.5 if kind not in ("light", "objects") else 3.0)
    mx, my, valid = clip.maps[3]
    assert mx.dtype == np.float32 and valid.mean() > 0.5


def test_clips_whose_colours_change():
    light = make_clip("light", photo(0), frames=12, size=(64, 48))
    lab0, lab1 = (color.rgb_to_lab(torch.from_numpy(f).permute(2, 0, 1).float() / 255).mean((1, 2))
                  for f in (light.frames[0], light.frames[-1]))
    assert lab1[0] < lab0[0] - 10 and lab1[2] > lab0[2] + 5  # darker and warmer by the end
    # same motion as a pan, but the colour changes along it: far more than resampling blur
    assert warp_error(light.frames, light.maps) > 1.3 * warp_error(*_pan_like(light))
    objects = make_clip("objects", photo(0), photo(1), frames=12, size=(64, 48))
    mx, my, valid = objects.maps[6]
    assert 0.3 < valid.mean() < 1.0  # object edges and uncovered background have no correspondence
    # the three patches are saturated: more chroma than the background photo alone
    background = make_clip("pan", photo(0), frames=12, size=(64, 48)).frames[6]
    assert chroma(objects.frames[6]).std() > chroma(background).std()
    slow = make_clip("slowpan", photo(0), frames=12, size=(64, 48))
    assert slow.maps[1][0][10, 20] == pytest.approx(20.5, abs=1e-4)  # 0.5 px per frame


def _pan_like(clip):
    """The first frame repeated along the clip's own maps: its colour does not change."""
    import cv2

    frames = [clip.frames[0]]
    for m in clip.maps[1:]:
        frames.append(cv2.remap(frames[-1], m[0], m[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))
    return frames, clip.maps


def test_make_clip_errors():
    with pytest.raises(ValueError, match="unknown clip kind"):
        make_clip("spin", photo(0))
    with pytest.raises(ValueError, match="second photo"):
        make_clip("cut", photo(0))


def test_measures_golden_values():
    rng = np.random.default_rng(0)
    still = [rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)] * 6
    assert cdc(still) == 0.0
    black, white = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)
    # disjoint histograms: JS divergence ln 2 at every step
    assert cdc([black, white, black, white, black, white], steps=(1,)) == pytest.approx(np.log(2))
    assert cdc([black, white], cuts=[1]) != cdc([black, white])  # the pair across a cut is skipped
    ident = np.meshgrid(np.arange(8, dtype=np.float32), np.arange(8, dtype=np.float32))
    maps = [None, (ident[0], ident[1], np.ones((8, 8), bool))]
    gray = np.full((8, 8, 3), 128, np.uint8)
    red = gray.copy()
    red[..., 0] = 200
    assert warp_error([gray, gray], maps) == pytest.approx(0.0, abs=1e-4)
    expected = float(np.linalg.norm(chroma(red)[0, 0] - chroma(gray)[0, 0]))
    assert warp_error([gray, red], maps) == pytest.approx(expected, rel=1e-4)
    assert frame_psnr([gray], [gray])[0] == pytest.approx(100.0)


def test_stabiliser_halves_the_flicker_of_noisy_predictions():
    """Flickering per-frame chroma (truth + a random colour cast and pixel noise per frame) on a pan: the stabiliser's
    output changes far less along the motion and is not further from the truth."""
    clip = make_clip("pan", photo(2, 150, 200), frames=16, size=(96, 72))
    rng = np.random.default_rng(1)
    stab = TemporalStabilizer()
    per_frame, stable = [], []
    for frame in clip.frames:
        l_norm, ab = lab_inputs(frame)
        cast = rng.normal(0, 0.08, (2, 1, 1)) + rng.normal(0, 0.05, ab.shape)
        noisy = ab + torch.from_numpy(cast.astype(np.float32))
        out = stab(l_norm, noisy)
        assert out.shape == ab.shape and out.dtype == torch.float32
        per_frame.append(to_rgb(l_norm, noisy))
        stable.append(to_rgb(l_norm, out))
    assert warp_error(stable, clip.maps) < 0.5 * warp_error(per_frame, clip.maps)
    assert cdc(stable) < 0.5 * cdc(per_frame)
    assert frame_psnr(stable, clip.frames).mean() > frame_psnr(per_frame, clip.frames).mean()


def test_first_frame_cut_and_size_change_take_the_prediction():
    a, b = make_clip("cut", photo(3), photo(4), frames=4, size=(64, 48)).frames[1:3]  # across the cut
    stab = TemporalStabilizer()
    la, aba = lab_inputs(a)
    lb, abb = lab_inputs(b)
    assert torch.equal(stab(la, aba), aba)  # first frame: as predicted
    motion = stab.motion(lb)
    assert motion is not None and motion.cut and motion.confidence.max() == 0
    assert torch.allclose(stab.blend(motion, abb), abb)
    small_l, small_ab = lab_inputs(a[:32, :40].copy())
    assert stab.motion(small_l) is None  # another size: a new shot
    assert torch.allclose(stab.blend(None, small_ab), small_ab)


def test_same_frame_twice_is_carried_and_config_checked():
    frame = photo(5, 48, 64)
    l_norm, ab = lab_inputs(frame)
    stab = TemporalStabilizer(StabilizerConfig(carry=0.5))
    stab(l_norm, ab)
    motion = stab.motion(l_norm)
    assert motion.confidence.mean() > 0.9 and not motion.cut
    out = stab.blend(motion, torch.zeros_like(ab))  # half of the previous chroma is carried (a first disagreement)
    assert torch.allclose(out, 0.5 * torch.from_numpy(motion.confidence)[None] * ab, atol=0.02)
    for bad in ({"carry": 1.0}, {"fb_tolerance": 0}, {"cut_fraction": 2}, {"preset": "slow"}, {"persistence": 1.0},
                {"persistence": 0.0}, {"persistence_power": 0}):
        with pytest.raises(ValueError):
            StabilizerConfig(**bad)


def test_track_points_follows_a_pan():
    clip = make_clip("pan", photo(6, 150, 200), frames=3, size=(96, 72))
    stab = TemporalStabilizer()
    l0, _ = lab_inputs(clip.frames[0])
    l1, _ = lab_inputs(clip.frames[1])
    stab.motion(l0)
    motion = stab.motion(l1)
    moved, kept = track_points(np.array([[40.0, 30.0], [95.5, 30.0]]), motion)
    # the camera moves right by 1.7 px and down by 0.6 px: content moves left and up
    assert kept[0] and moved[0] == pytest.approx([40 - 1.7, 30 - 0.6], abs=0.35)
    assert track_points(np.zeros((0, 2)), motion)[0].shape == (0, 2)


def test_a_lasting_disagreement_gets_through_and_flicker_does_not():
    """Issue #31, item 7: a prediction that keeps saying another colour (here: a constant shift from
    frame 8 on, as when the light changes or more of the scene shows) is followed within a few frames
    with ``persistence``; without it the carried colour holds it back for ~12 frames. Flicker (a
    random cast per frame) stays held still either way."""
    frame = photo(7, 48, 64)
    l_norm, ab = lab_inputs(frame)
    rng = np.random.default_rng(3)
    shift = torch.tensor([0.25, -0.15]).view(2, 1, 1)

    def run(config, flicker):
        stab, errs, moves = TemporalStabilizer(config), [], []
        prev = None
        for t in range(24):
            truth = ab + (shift if t >= 8 else 0)
            pred = truth + (torch.from_numpy(rng.normal(0, 0.1, (2, 1, 1)).astype(np.float32)) if flicker else 0)
            out = stab(l_norm, pred)
            errs.append(float((out - truth).abs().mean()))
            if prev is not None:
                moves.append(float((out - prev).abs().mean()))
            prev = out
        return np.array(errs), np.array(moves)

    new, old = StabilizerConfig(), StabilizerConfig(persistence=None)
    assert new.persistence == 0.8 and new.persistence_power == 2.0
    e_new, _ = run(new, flicker=False)
    e_old, _ = run(old, flicker=False)
    assert e_new[:8].max() < 1e-5 and e_old[:8].max() < 1e-5
    assert e_new[12:16].mean() < 0.5 * e_old[12:16].mean()  # followed within a few frames
    assert e_new[-1] < 0.02 and e_old[16] > 0.05
    _, m_new = run(new, flicker=True)
    _, m_old = run(old, flicker=True)
    _, m_raw = run(StabilizerConfig(carry=0.0), flicker=True)
    assert m_new[:6].mean() < 0.5 * m_raw[:6].mean() and m_old[:6].mean() < 0.5 * m_raw[:6].mean()
