"""Long videos in chunks: colorize-many cuts them by time, ranks share the chunks, rank 0 joins them
by copying packets (frame count, time stamps, size and audio kept; equal to one run within the
encoder's noise)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from test_video import make_clip, read
from typer.testing import CliRunner

from colorization import Colorizer, cli
from colorization.batch import video_chunks
from colorization.batch.distributed import STATE_DIR, ManyConfig, launch_local, resolve_hints
from colorization.batch.hint_files import HintsFileError
from colorization.video.chunks import colorize_chunk, join_chunks, plan_chunks
from colorization.video.io import VideoError, VideoReader
from colorization.video.pipeline import colorize_video

runner = CliRunner()


@pytest.fixture(scope="module")
def colorizer(model_dir):
    return Colorizer.from_pretrained(model_dir, device="cpu")


def _rgb(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.int16) for f in c.decode(video=0)]


def _keyframes(path: Path) -> list[bool]:
    with av.open(str(path)) as c:
        return [p.is_keyframe for p in c.demux(c.streams.video[0]) if p.dts is not None]


def test_plan_covers_every_frame_once(tmp_path):
    src = tmp_path / "clip.mp4"
    stamps = make_clip(src, n=48)  # 1.92 s at 25 frames/s
    with VideoReader(src) as r:
        chunks = plan_chunks(r, 0.5, overlap_seconds=0.3)
        ticks = [round(s / 1000 / r.time_base) for s in stamps]
        with pytest.raises(ValueError, match="chunk_seconds"):
            plan_chunks(r, 0)
        assert len(plan_chunks(r, 10)) == 1
    assert [c.index for c in chunks] == [0, 1, 2, 3] and chunks[-1].end is None
    assert chunks[0].warmup == chunks[0].start and all(c.warmup < c.start for c in chunks[1:])
    owners = [[c.index for c in chunks if c.start <= t and (c.end is None or t < c.end)] for t in ticks]
    assert all(len(o) == 1 for o in owners)


def test_chunks_join_losslessly(tmp_path, colorizer):
    src = tmp_path / "clip.mp4"
    make_clip(src, n=48)
    with VideoReader(src) as r:
        chunks = plan_chunks(r, 0.5, overlap_seconds=0.3)
    files = []
    for c in chunks:
        f = tmp_path / f"{c.index}.mp4"
        assert colorize_chunk(src, f, c, colorizer) > 0
        files.append(f)
        assert _keyframes(f)[0]  # every chunk starts with a key frame: the packets can follow another's
        with av.open(str(f)) as part:
            assert not part.streams.audio
    dst = tmp_path / "out" / "joined.mp4"
    assert join_chunks(src, files, dst) == 48
    luma, times, r = read(dst)
    _, src_times, _ = read(src)
    assert (len(luma), r.info.width, r.info.height) == (48, 64, 48) and times == src_times
    assert r.info.audio == ("aac",)
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        assert b.streams.audio[0].frames == a.streams.audio[0].frames  # the audio is copied whole
    joined, pieces = _rgb(dst), [f for p in files for f in _rgb(p)]
    assert len(pieces) == 48 and all(np.array_equal(a, b) for a, b in zip(joined, pieces))  # no re-encode

    with pytest.raises(VideoError, match="no chunks"):
        join_chunks(src, [], tmp_path / "none.mp4")
    other = tmp_path / "other.webm"  # a chunk of another codec cannot follow
    with VideoReader(src) as rr:
        last = plan_chunks(rr, 0.5, 0.0)[-1]
    colorize_chunk(src, other, last, colorizer, format="webm")
    with pytest.raises(VideoError, match="other settings"):
        join_chunks(src, [files[0], other], tmp_path / "bad.mp4")
    assert not (tmp_path / "bad.mp4").exists() and not list(tmp_path.glob(".bad.mp4*"))


def _job(folder: Path, out: Path, model_dir: Path, **kw) -> ManyConfig:
    return ManyConfig(out_dir=str(out), input_dir=str(folder), model=str(model_dir), device="cpu", workers=0,
                      chunk_seconds=0.5, overlap_seconds=0.4, **kw)


def test_two_ranks_share_the_chunks_and_the_join_equals_one_run(tmp_path, colorizer, model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "film.mp4", n=48)
    make_clip(folder / "short.mkv", n=8, fmt="matroska")  # 0.32 s: one chunk, colorized whole
    config = _job(folder, tmp_path / "out", model_dir)
    out = Path(config.out_dir)
    plans = video_chunks.plan_videos(config.entries("videos"), config.video_outputs(), 0.5, 0.4, None)
    assert [len(p.chunks) for p in plans] == [4, 1]
    # two ranks, one after the other in this process: units (film's 4 chunks, short) go round robin
    done = [video_chunks.colorize_chunks(colorizer, plans, out, fmt="mp4", force=False, saturation=1.0,
                                         batch_size=4, rank=r, world_size=2) for r in (0, 1)]
    assert [[k for _, k, _, _ in reports] for _, reports in done] == [[0, 2], [1, 3]]
    assert [s.done for s, _ in done] == [1, 0]  # unit 4 (short.mkv) is rank 0's
    assert all(frames > 0 for _, reports in done for _, _, frames, _ in reports)
    joined = video_chunks.join_videos(plans, [r for _, reports in done for r in reports], out, "mp4")
    assert (joined.done, joined.failed) == (1, 0)
    assert sorted(p.name for p in out.iterdir()) == [STATE_DIR, "film.mp4", "short.mp4"]
    assert not (out / STATE_DIR / video_chunks.CHUNKS_DIR).exists()  # the chunks are removed once joined

    single = tmp_path / "single.mp4"
    colorize_video(folder / "film.mp4", single, colorizer, progress=False)
    (_, ta, ra), (b, tb, rb) = read(single), read(out / "film.mp4")
    assert len(b) == 48 and tb == ta and (rb.info.width, rb.info.height, rb.info.rate) == (64, 48, ra.info.rate)
    assert rb.info.audio == ra.info.audio == ("aac",)
    diffs = [float(np.abs(x - y).mean()) for x, y in zip(_rgb(single), _rgb(out / "film.mp4"))]
    assert max(diffs) < 3.5, diffs  # H.264 noise (both are ~2 levels from the unencoded frames)


def test_a_failed_chunk_fails_its_video_and_keeps_the_others(tmp_path, colorizer, model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "film.mp4", n=48)
    config = _job(folder, tmp_path / "out", model_dir)
    out = Path(config.out_dir)
    plans = video_chunks.plan_videos(config.entries("videos"), config.video_outputs(), 0.5, 0.4, None)
    _, reports = video_chunks.colorize_chunks(colorizer, plans, out, fmt="mp4", force=False, saturation=1.0,
                                              batch_size=4)
    reports[2] = (0, 2, -1, "film.mp4: chunk 2 failed")
    video_chunks.chunk_path(out, plans[0], 2).unlink()
    summary = video_chunks.join_videos(plans, reports, out, "mp4")
    assert (summary.done, summary.failed) == (0, 1) and summary.failures[0][1] == "film.mp4: chunk 2 failed"
    assert not (out / "film.mp4").exists()
    kept = sorted(p.name for p in video_chunks.chunk_path(out, plans[0], 0).parent.iterdir())
    assert kept == ["00000.mp4", "00001.mp4", "00003.mp4"]
    # the rerun plans afresh, redoes only the missing chunk and joins
    plans = video_chunks.plan_videos(config.entries("videos"), config.video_outputs(), 0.5, 0.4, None)
    _, again = video_chunks.colorize_chunks(colorizer, plans, out, fmt="mp4", force=False, saturation=1.0,
                                            batch_size=4)
    assert [(k, reason) for _, k, _, reason in again] == [(0, "kept"), (1, "kept"), (2, ""), (3, "kept")]
    assert video_chunks.join_videos(plans, again, out, "mp4").done == 1
    assert len(read(out / "film.mp4")[0]) == 48


def test_colorize_many_cli_with_photos_and_a_long_video(tmp_path, model_dir):
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "film.mp4", n=48)
    Image.fromarray(np.full((20, 30), 120, np.uint8), "L").save(folder / "photo.png")
    (folder / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "out"
    args = ["colorize-many", "--input", str(folder), "-o", str(out), "--model", str(model_dir), "--device", "cpu",
            "--workers", "0", "--chunk-seconds", "0.5", "--overlap-seconds", "0.3"]
    first = runner.invoke(cli.app, args)
    assert first.exit_code == 0, first.output
    assert "2 colorized, 0 skipped, 1 failed" in first.output
    summary = json.loads((out / STATE_DIR / "summary.json").read_text())
    assert summary["joined"] == {"done": 1, "failed": 0}
    assert summary["failures"][0][0].endswith("broken.mp4") and "not a readable video" in summary["failures"][0][1]
    assert len(read(out / "film.mp4")[0]) == 48 and (out / "photo.png").exists()
    again = runner.invoke(cli.app, args)
    assert "0 colorized, 2 skipped, 1 failed" in again.output


def test_colorize_many_hints_are_for_photos(tmp_path, model_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "film.mp4", n=6)
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"film.mp4": ["1,1,#ff0000"]}))
    with pytest.raises(HintsFileError, match="film.mp4 is a video; colorize-many takes colour hints for photos"):
        resolve_hints(_job(folder, tmp_path / "out", model_dir, hints_file=str(hints)))


@pytest.mark.slow
def test_two_spawned_processes_join_a_long_video(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    folder = tmp_path / "in"
    folder.mkdir()
    make_clip(folder / "film.mp4", n=48)
    summary = launch_local(_job(folder, tmp_path / "out", model_dir), nprocs=2)
    assert (summary["done"], summary["failed"], summary["world_size"]) == (1, 0, 2)
    assert len(read(tmp_path / "out" / "film.mp4")[0]) == 48
