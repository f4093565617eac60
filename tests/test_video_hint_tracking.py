"""Colour hints through a video shot (issue #31, item 4): re-anchoring by the neighbourhood where the
flow fails (fine repeating texture), ``hold: "shot"`` points that are found again after being
covered, and one warning per point (frame and reason) when a point stops before its shot ends."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from colorization import Colorizer
from colorization.batch.hint_files import HintsFileError, load_hints_file
from colorization.inference.hints import Hint
from colorization.inference.inputs import prepare_image
from colorization.video import HintWarning, VideoHint, colorize_frames
from colorization.video import hint_tracking as ht
from colorization.video.hint_tracking import HintTracker, coerce_video_hints, find_patch
from colorization.video.stabilize import TemporalStabilizer, track_points
from colorization.video.synthetic import make_clip

VELOCITY = np.array([1.7, 0.6])  # the camera of make_clip("pan"): content moves by -VELOCITY per frame


def louvres(period: float = 4.0, h: int = 200, w: int = 300) -> np.ndarray:
    """A smooth random scene with a window of fine horizontal louvres in its middle, (h, w, 3) uint8."""
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 6)
    base = (base - base.min()) / np.ptp(base) * 160 + 40
    y, x = np.mgrid[0:h, 0:w]
    stripes = 128 + 90 * np.sign(np.sin(2 * np.pi * y / period))
    window = (x > 100) & (x < 200) & (y > 60) & (y < 140)
    return np.repeat(np.where(window, stripes, base).astype(np.uint8)[..., None], 3, axis=2)


def covered_pan(frames: int = 20) -> list[np.ndarray]:
    """A texture panning left 1 px per frame; a flat bar 24 px wide crosses it rightwards at 6 px per
    frame, covering x = 58 (where the point given at x = 70 on frame 0 is then) on frames 12-16."""
    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.random((96, 128)).astype(np.float32), (0, 0), 2)
    bg = ((bg - bg.min()) / np.ptp(bg) * 200 + 30).astype(np.uint8)
    out = []
    for t in range(frames):
        f = np.roll(bg, -t, axis=1).copy()
        x0 = -30 + 6 * t
        f[:, max(0, x0) : max(0, x0 + 24)] = 90
        out.append(f)
    return out


def track(frames: list[np.ndarray], hints: dict, size: int = 96) -> tuple[list[list[Hint]], list[str]]:
    """The points in force on each frame (frame pixels) and the warnings, as colorize_frames computes them."""
    messages: list[str] = []
    tracker, stab = HintTracker(hints, messages.append), TemporalStabilizer()
    points = []
    for t, gray in enumerate(frames):
        prep = prepare_image(Image.fromarray(gray), size=size)
        h, w = prep.work_hw
        pts, _ = tracker.step(t, stab.motion(prep.l_work[:, :h, :w]), prep)
        points.append(pts)
    return points, messages


# --------------------------------------------------------------------------------------------
# hold: parsing, old files still valid
# --------------------------------------------------------------------------------------------


def test_video_points_may_hold_for_the_shot():
    pts = coerce_video_hints([
        {"x": 1, "y": 2, "color": "#ff0000", "hold": "shot"},
        "3,4,#00ff00,shot",
        "5,6,0,0,255,track",
        "7,8,#010203",
        VideoHint(9, 10, (1, 2, 3), hold="shot"),
        Hint(1, 1, "#ffffff"),
    ])
    assert [getattr(p, "hold", "track") for p in pts] == ["shot", "shot", "track", "track", "shot", "track"]
    assert pts[1].rgb == (0, 255, 0) and (pts[2].x, pts[2].y, pts[2].rgb) == (5, 6, (0, 0, 255))
    assert type(pts[3]) is Hint  # a point without a hold is a plain Hint, as before
    for bad, message in [
        ([{"x": 1, "y": 2, "color": "#ff0000", "hold": "forever"}], "hint 0: hold must be one of"),
        (["1,2,#ff0000,later"], "hint 0: hold must be one of"),
        ([{"x": 1, "y": 2, "color": "#ff0000", "hold": 1}], "hold must be one of"),
        (["7,8,#010203", {"x": 1, "hold": "shot"}], "hint 1: needs exactly the keys x, y, color"),
        ("1,2,#ff0000", "must be a list"),
    ]:
        with pytest.raises(ValueError, match=bad and message):
            coerce_video_hints(bad)
    assert coerce_video_hints(None) == []


def test_hints_file_hold_for_videos_only(tmp_path):
    f = tmp_path / "h.json"
    f.write_text(json.dumps({"film.mp4": {"0": [{"x": 1, "y": 2, "color": "#ff0000", "hold": "shot"}],
                                          "9": ["3,4,#00ff00"]},
                             "clip.mkv": ["5,6,#0000ff,shot"], "photo.jpg": ["1,1,#ffffff"]}))
    loaded = load_hints_file(f)
    assert loaded["film.mp4"][1][0][0].hold == "shot" and type(loaded["film.mp4"][1][9][0]) is Hint
    assert loaded["clip.mkv"][1][0].hold == "shot" and type(loaded["photo.jpg"][1][0]) is Hint
    f.write_text(json.dumps([{"x": 1, "y": 2, "color": "#ff0000", "hold": "shot"}]))  # one input: may be a video
    assert load_hints_file(f)[0].hold == "shot"
    f.write_text(json.dumps({"photo.jpg": [{"x": 1, "y": 2, "color": "#ff0000", "hold": "shot"}]}))
    with pytest.raises(HintsFileError, match='point 0 .*"hold" is for the points of a video'):
        load_hints_file(f)
    f.write_text(json.dumps({"film.mp4": {"0": ["1,2,#ff0000,always"]}}))
    with pytest.raises(HintsFileError, match="frame 0: point 0 .*hold must be one of 'track', 'shot'"):
        load_hints_file(f)


# --------------------------------------------------------------------------------------------
# finding a neighbourhood again
# --------------------------------------------------------------------------------------------


def test_find_patch_golden_values():
    rng = np.random.default_rng(1)
    lum = (cv2.GaussianBlur(rng.random((60, 80)).astype(np.float32), (0, 0), 1.5) * 255).astype(np.uint8)
    tmpl = np.ascontiguousarray(lum[25:36, 35:46])  # centred on (40, 30)
    shifted = np.roll(lum, (-2, 3), axis=(0, 1))  # the point is now at (43, 28)
    pos, score = find_patch(shifted, [tmpl], np.array([41.0, 29.0]), search=6)
    assert pos == pytest.approx([43, 28], abs=0.25) and score > 0.99
    assert find_patch(np.full_like(lum, 7), [tmpl], np.array([41.0, 29.0]), 6) is None  # a flat frame
    assert find_patch(lum, [np.full_like(tmpl, 50)], np.array([40.0, 30.0]), 6) is None  # a flat patch
    other = (rng.random((60, 80)) * 255).astype(np.uint8)
    assert find_patch(other, [tmpl], np.array([40.0, 30.0]), 6) is None  # nothing like it


# --------------------------------------------------------------------------------------------
# the tracker
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("period", [3.0, 4.0, 6.0])
def test_a_hint_on_repeating_texture_survives_the_shot(period):
    """Fine louvres (period 1.7-3.3 working pixels after the camera's scaling): the flow there is
    not trusted, so following the flow alone loses the point on frame 1; its neighbourhood keeps it
    within a pixel of the true motion to the end."""
    clip = make_clip("pan", louvres(period), frames=16, size=(128, 96))
    frames = clip.gray()
    stab = TemporalStabilizer()
    stab.motion(prepare_image(Image.fromarray(frames[0]), size=96).l_work[:, :96, :128])
    motion = stab.motion(prepare_image(Image.fromarray(frames[1]), size=96).l_work[:, :96, :128])
    _, kept = track_points(np.array([[64.0, 48.0]]), motion)
    assert not kept[0]  # the flow alone drops it (what issue #31 saw)
    for hold in ("track", "shot"):
        points, messages = track(frames, {0: [VideoHint(64, 48, "#c0392b", hold=hold)]})
        assert messages == []
        for t, pts in enumerate(points):
            assert len(pts) == 1 and pts[0].rgb == (0xC0, 0x39, 0x2B)
            assert np.hypot(*(np.array([pts[0].x, pts[0].y]) - (np.array([64.0, 48.0]) - t * VELOCITY))) < 1.5, t


def test_a_covered_hint_is_dropped_with_one_warning_and_a_shot_hint_is_found_again():
    frames = covered_pan()
    truth = [70.0 - t for t in range(len(frames))]
    points, messages = track(frames, {0: ["70,48,#ff0000"]})
    assert len(messages) == 1, messages
    m = re.fullmatch(r"hint \(70, 48, #ff0000\) of frame 0 is dropped on frame (\d+), before its shot ends: "
                     r".*not found near it \(occluded, or changed\); give it again .*", messages[0])
    assert m and 12 <= int(m.group(1)) <= 15, messages[0]
    lost = int(m.group(1))
    assert all(len(p) == 1 for p in points[:lost]) and all(p == [] for p in points[lost:])
    assert all(abs(points[t][0].x - truth[t]) < 0.5 for t in range(12))

    points, messages = track(frames, {0: [VideoHint(70, 48, "#ff0000", hold="shot")]})
    assert len(messages) == 1 and re.search(r"hold shot\) of frame 0 is missing on frame 1[2-5]: .*looked for on every "
                                            r"later frame of the shot", messages[0]), messages
    missing = [t for t, p in enumerate(points) if not p]
    assert missing and max(missing) <= 16
    for t in range(max(missing) + 1, len(frames)):  # uncovered: found again where it really is
        assert len(points[t]) == 1 and abs(points[t][0].x - truth[t]) < 1.0 and abs(points[t][0].y - 48) < 1.0


def test_points_end_with_their_shot_without_a_warning():
    frames = covered_pan(2) + make_clip("pan", louvres(6.0), frames=2, size=(128, 96)).gray()  # a cut after 2
    points, messages = track(frames, {0: [VideoHint(30, 20, "#ff0000", hold="shot"), "31,21,#00ff00"]})
    assert [len(p) for p in points] == [2, 2, 0, 0] and messages == []
    with pytest.raises(ValueError, match="frame 1: hint at \\(200, 1\\) lies outside the 128x96 frame"):
        track(frames, {1: ["200,1,#ff0000"]})
    with pytest.raises(ValueError, match="start at 0"):
        HintTracker({-1: ["1,1,#ff0000"]})


def test_a_fading_hint_is_reported_once():
    messages: list[str] = []
    tracker = HintTracker({0: ["4,3,#ff0000"]}, messages.append)
    prep = prepare_image(Image.fromarray(np.full((6, 8), 128, np.uint8)), size=6)
    _, applied = tracker.step(0, None, prep)
    red = ht._hint_ab(Hint(0, 0, "#ff0000"))
    ab = np.zeros((2, 6, 8), np.float32)
    for t, share in enumerate([0.6, 1.0, 0.7, 0.45, 0.2]):
        ab[:, 3, 4] = share * red
        tracker.observe(t, applied, ab)
    assert messages == ["hint (4, 3, #ff0000) of frame 0 fades below half of its strength on frame 3 (its colour "
                        "reaches 45% of its peak on its pixel)"]
    grey = HintTracker({0: ["4,3,#808080"]}, messages.append)  # a grey point has no strength to lose
    _, applied = grey.step(0, None, prep)
    grey.observe(0, applied, np.zeros((2, 6, 8), np.float32))
    assert len(messages) == 1


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------


def test_colorize_frames_keeps_a_hint_on_texture_and_warns_where_it_cannot(hint_model_dir, monkeypatch):
    c = Colorizer.from_pretrained(hint_model_dir, device="cpu")
    frames = make_clip("pan", louvres(4.0), frames=10, size=(128, 96)).gray()
    hint = {0: [Hint(64, 48, "#ff0000")]}
    plain = list(colorize_frames(c, frames, stabilize=False))
    messages: list[str] = []
    hinted = list(colorize_frames(c, frames, stabilize=False, hints=hint, on_warning=messages.append))
    assert messages == []
    changed = [int(np.abs(a.astype(int) - b).max()) for a, b in zip(plain, hinted)]
    assert all(d > 0 for d in changed), changed  # applied on every frame (no stabiliser carries it)

    monkeypatch.setattr(ht, "find_patch", lambda *a, **k: None)  # the flow alone: dropped, and the user is told
    with pytest.warns(HintWarning, match=r"hint \(64, 48, #ff0000\) of frame 0 is dropped on frame [12], before its "
                                         r"shot ends: the motion there cannot be followed \(flow confidence 0\.\d\d\)"):
        hinted = list(colorize_frames(c, frames, hints=hint))
    assert len(hinted) == len(frames)


def test_colorize_command_reports_a_dropped_hint_and_takes_hold_from_the_file(tmp_path, hint_model_dir):
    from fractions import Fraction

    import av
    from typer.testing import CliRunner

    from colorization import cli

    src = tmp_path / "film.mp4"
    with av.open(str(src), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 128, 96, "yuv420p"
        s.options = {"crf": "10"}
        for i, g in enumerate(covered_pan()):
            f = av.VideoFrame.from_ndarray(g, format="gray").reformat(format="yuv420p")
            f.pts, f.time_base = i, Fraction(1, 25)
            c.mux(s.encode(f))
        c.mux(s.encode(None))
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"film.mp4": {"0": ["70,48,#ff0000", {"x": 70, "y": 40, "color": "#00ff00",
                                                                      "hold": "shot"}]}}))
    runner = CliRunner()
    res = runner.invoke(cli.app, ["colorize", str(src), "-o", str(tmp_path / "out"), "--model", str(hint_model_dir),
                                  "--hints", str(hints)], env={"COLUMNS": "400"})
    assert res.exit_code == 0 and (tmp_path / "out" / "film.mp4").exists(), res.output
    lines = [line for line in res.output.splitlines() if line.startswith("warning: ")]
    assert len(lines) == 2, res.output  # once per point
    assert any(re.fullmatch(r"warning: .*film\.mp4: hint \(70, 48, #ff0000\) of frame 0 is dropped on frame 1\d, "
                            r"before its shot ends: .*", line) for line in lines), lines
    assert any(re.fullmatch(r"warning: .*film\.mp4: hint \(70, 40, #00ff00, hold shot\) of frame 0 is missing on "
                            r"frame 1\d: .*", line) for line in lines), lines
