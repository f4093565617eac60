"""Reference photos for video (issue #32): one for the whole clip or one per shot, matched once per
shot and carried along the flow, scene cuts picking up the next reference, a hinted first frame
serving as its shot's reference, starts given as frames or times, and the errors (nothing written)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_video import make_clip as write_clip

from colorization import Colorizer, color
from colorization.evaluation.video_quality import frame_psnr
from colorization.inference.hints import Hint
from colorization.inference.reference import GrayReferenceError, Reference
from colorization.video import colorize_frames, colorize_video
from colorization.video.pipeline import reference_starts
from colorization.video.synthetic import make_clip

skimage_data = pytest.importorskip("skimage.data")
SIZE = (128, 96)


def picture(name: str) -> np.ndarray:
    return np.asarray(Image.fromarray(getattr(skimage_data, name)()).convert("RGB").resize((192, 160)))


@pytest.fixture(scope="module")
def colorizer() -> Colorizer:
    return Colorizer.from_pretrained(device="cpu")


@pytest.fixture(scope="module")
def cut_clip():
    """10 frames: a pan over the coffee cup, a cut, a pan over the rocket."""
    return make_clip("cut", picture("coffee"), picture("rocket"), frames=10, size=SIZE)


def count_calls(monkeypatch, colorizer: Colorizer, name: str) -> list:
    """Record the calls of ``colorizer.<name>`` (for encode_reference: those that read a photo, not
    the ones handed an already encoded Reference)."""
    calls: list = []
    original = getattr(colorizer, name)

    def spy(*args, **kwargs):
        if not (name == "encode_reference" and isinstance(args[0], Reference)):
            calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(colorizer, name, spy)
    return calls


def test_one_reference_per_shot_is_matched_once_per_shot(colorizer, cut_clip, monkeypatch) -> None:
    gray, truth = cut_clip.gray(), cut_clip.frames
    (cut,) = cut_clip.cuts
    auto = list(colorize_frames(colorizer, gray))
    encodes = count_calls(monkeypatch, colorizer, "encode_reference")
    matches = count_calls(monkeypatch, colorizer, "match_reference")
    out = list(colorize_frames(colorizer, gray, reference={0: truth[0], cut: truth[cut]}, batch_size=3))
    assert len(out) == len(gray) and out[0].shape == (SIZE[1], SIZE[0], 3) and out[0].dtype == np.uint8
    assert len(encodes) == 2  # each reference read and encoded once
    assert len(matches) == 2  # ... and matched once per shot
    gain = frame_psnr(out, truth) - frame_psnr(auto, truth)
    assert gain[:cut].mean() > 2 and gain[cut:].mean() > 2, gain


def test_a_cut_picks_up_the_reference_in_force(colorizer, cut_clip, monkeypatch) -> None:
    gray, truth = cut_clip.gray(), cut_clip.frames
    matches = count_calls(monkeypatch, colorizer, "match_reference")
    list(colorize_frames(colorizer, gray, reference=truth[0]))  # one reference for the whole clip
    assert len(matches) == 2  # frame 0, and again at the detected cut (the rocket does not fit it)


def test_a_shot_pays_for_one_matching_even_when_its_points_leave(colorizer, monkeypatch) -> None:
    clip = make_clip("zoom", picture("coffee"), frames=16, size=SIZE)  # zooming in: points leave the frame
    matches = count_calls(monkeypatch, colorizer, "match_reference")
    list(colorize_frames(colorizer, clip.gray(), reference=clip.frames[0]))
    assert len(matches) == 1


def test_strength_zero_and_an_unfit_reference_leave_the_automatic_colours(colorizer, cut_clip) -> None:
    gray = cut_clip.gray()
    auto = list(colorize_frames(colorizer, gray))
    off = list(colorize_frames(colorizer, gray, reference=cut_clip.frames[0], reference_strength=0))
    unfit = list(colorize_frames(colorizer, gray[:4], reference=picture("chelsea")))
    assert all(np.array_equal(a, b) for a, b in zip(auto, off))
    assert all(np.array_equal(a, b) for a, b in zip(auto[:4], unfit))


def test_a_hinted_first_frame_serves_as_its_shots_reference(colorizer, cut_clip, monkeypatch) -> None:
    gray = cut_clip.gray()
    encodes = count_calls(monkeypatch, colorizer, "encode_reference")
    out = list(colorize_frames(colorizer, gray, hints={0: [Hint(60, 40, "#d02020")]}, batch_size=2,
                               saturation=0.5, hinted_reference=True))
    # once, from the first frame's colours at the working size, before the saturation is applied
    assert len(encodes) == 1
    work = encodes[0][0]
    assert work.dtype == np.float32 and work.ndim == 3 and work.shape[2] == 3
    chroma = color.rgb_to_lab(torch.from_numpy(work).permute(2, 0, 1))[1:].norm(dim=0).mean()
    shown = color.rgb_to_lab(torch.from_numpy(out[0]).permute(2, 0, 1).float() / 255)[1:].norm(dim=0).mean()
    assert float(chroma) > 1.5 * float(shown)  # the output's chroma is halved, the reference's is not
    encodes.clear()
    list(colorize_frames(colorizer, gray, hints={0: [Hint(60, 40, "#d02020")]}))  # off by default
    list(colorize_frames(colorizer, gray, hints={3: [Hint(60, 40, "#d02020")]}, hinted_reference=True))  # mid-shot
    assert encodes == []


def test_reference_starts() -> None:
    assert reference_starts({0: "a", "412": "b", "2.5s": "c"}, 24.0) == {0: "a", 412: "b", 60: "c"}
    for bad, message in (({"-1": "a"}, "frame index"), ({"x": "a"}, "frame index"), ({"1s": "a"}, None),
                         ({"3": "a", "0.125s": "b"}, "two references")):
        with pytest.raises(ValueError, match=message or "frame rate"):
            reference_starts(bad, 24.0 if message else None)


def test_video_errors_write_nothing(colorizer, tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    write_clip(src, n=6, w=64, h=48, audio=None)
    colour = picture("coffee")
    with pytest.raises(ValueError, match="frame 9, but the video has 6 frames"):
        colorize_video(src, tmp_path / "late.mp4", colorizer, reference={0: colour, 9: colour})
    with pytest.raises(GrayReferenceError):
        colorize_video(src, tmp_path / "gray.mp4", colorizer, reference=np.repeat(colour[..., :1], 3, 2))
    with pytest.raises(ValueError, match="frame rate|frame index"):
        colorize_video(src, tmp_path / "bad.mp4", colorizer, reference={"soon": colour})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    result = colorize_video(src, tmp_path / "ok.mp4", colorizer, reference={"0s": colour, "0.1s": colour})
    assert result.frames == 6 and (tmp_path / "ok.mp4").exists()
