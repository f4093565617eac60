// Video uploads of the `colorization serve` page: POST /videos starts a job, GET /videos/{id} is
// polled for its progress, and the finished video is played from GET /videos/{id}/result (same
// origin, so the page's CSP media-src 'self' allows it) and offered for download. app.js decides
// whether a chosen file is a video and hands it over; errors go back through opts.showError.
"use strict";

window.createVideoJobs = function createVideoJobs(opts) {
  const $ = (id) => document.getElementById(id);
  const section = $("video-results");
  const inputVideo = $("input-video");
  const inputFigure = $("input-video-figure");
  const resultVideo = $("result-video");
  const download = $("video-download");
  const info = $("video-info");
  const progress = $("video-progress");
  const POLL_MS = 400;

  let limits = null; // /health limits.video
  let run = 0; // a newer start() or clear() makes older polls stop
  let jobUrl = null; // the shown (or running) job, deleted on the server when replaced
  let inputUrl = null;

  function extension(name) {
    const dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot).toLowerCase();
  }

  // A file is a video when the browser types it video/* or its name ends like one of the
  // server's video extensions (e.g. .mkv, .ts or .y4m often come without a type).
  function isVideo(file) {
    if (file.type && file.type.startsWith("video/")) return true;
    return limits !== null && limits.extensions.includes(extension(file.name));
  }

  function limitsText() {
    if (!limits) return "";
    const seconds = Math.round(limits.max_seconds);
    return "Videos: up to " + seconds + " s, " + limits.max_frames.toLocaleString("en") + " frames and " +
      (limits.max_pixels / 1e6).toFixed(1) + " megapixels a frame.";
  }

  function forget() {
    if (jobUrl) fetch(jobUrl, { method: "DELETE" }).catch(() => {});
    jobUrl = null;
  }

  // Hide the video result and stop any poll (the job on the server is deleted when it is done).
  function clear() {
    run += 1;
    section.hidden = true;
    progress.hidden = true;
    [resultVideo, inputVideo].forEach((v) => {
      v.removeAttribute("src");
      v.load();
    });
    download.removeAttribute("href");
    info.textContent = "";
    if (inputUrl) URL.revokeObjectURL(inputUrl);
    inputUrl = null;
    forget();
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function showProgress(done, total) {
    progress.hidden = false;
    if (total) {
      progress.max = total;
      progress.value = done;
      const percent = Math.floor((100 * done) / total);
      return done + " / " + total + " frames (" + percent + " %)";
    }
    progress.removeAttribute("value"); // indeterminate until the frame count is known
    return done + " frames";
  }

  // The failed job's error ({error, detail}) in the words the photo path uses for HTTP errors.
  function jobErrorMessage(error) {
    const detail = (error && error.detail) || "the video could not be colorized";
    if (error && error.error === "image_too_large") return "Too large: " + detail;
    if (error && error.error === "not_an_image") return "Not a video: " + detail;
    if (error && error.error === "internal_error") return "Server error: " + detail;
    return "Cannot colorize: " + detail;
  }

  function loaded(video) {
    return new Promise((resolve, reject) => {
      if (video.readyState >= 2) {
        resolve();
        return;
      }
      video.addEventListener("loadeddata", () => resolve(), { once: true });
      video.addEventListener("error", () => reject(new Error("cannot play")), { once: true });
    });
  }

  // Upload `file` and follow its job to the end; settings: {saturation, format, reference (a File or
  // null), referenceStrength}.
  async function start(file, settings) {
    clear();
    const mine = run;
    const stale = () => run !== mine;
    inputFigure.hidden = file.size === 0; // (an empty blob: the browser fails its range request)
    if (file.size > 0) {
      inputUrl = URL.createObjectURL(file);
      inputVideo.src = inputUrl;
      inputVideo.addEventListener("error", () => { inputFigure.hidden = true; }, { once: true }); // e.g. AVI
    }
    const form = new FormData();
    form.append("file", file, file.name);
    form.append("saturation", settings.saturation);
    form.append("format", settings.format);
    if (settings.reference) {
      form.append("reference", settings.reference, settings.reference.name);
      form.append("reference_strength", settings.referenceStrength);
    }
    opts.setStatus("Uploading " + file.name + "…");
    opts.setState("busy");
    const started = performance.now();
    let job;
    try {
      const response = await fetch("/videos", { method: "POST", body: form });
      if (stale()) return;
      if (response.status !== 202) {
        const message = await opts.errorMessage(response, "video");
        if (!stale()) opts.showError(message);
        return;
      }
      job = await response.json();
      jobUrl = job.status_url;
      while (job.status === "queued" || job.status === "running") {
        const where = job.status === "queued" ? "waiting for the server" : showProgress(job.frames_done, job.frames_total);
        opts.setStatus("Colorizing " + file.name + ": " + where + "…");
        await sleep(POLL_MS);
        if (stale()) return;
        const response = await fetch(job.status_url, { cache: "no-store" });
        if (stale()) return;
        if (!response.ok) {
          const message = await opts.errorMessage(response, "video");
          if (!stale()) opts.showError(message);
          return;
        }
        job = await response.json();
      }
    } catch (err) {
      if (!stale()) opts.showError("Could not reach the server: " + err.message);
      return;
    }
    if (stale()) return;
    progress.hidden = true;
    if (job.status !== "done") {
      opts.showError(jobErrorMessage(job.error));
      return;
    }
    const stem = file.name.replace(/\.[^.]*$/, "") || "video";
    const suffix = settings.format === "mkv" ? ".mkv" : "." + settings.format;
    resultVideo.src = job.result_url;
    download.href = job.result_url;
    download.download = stem + "_color" + suffix;
    section.hidden = false;
    try {
      await loaded(resultVideo);
    } catch (err) {
      if (stale()) return;
      // The browser cannot play this format (e.g. Matroska in some browsers); it can still be saved.
      info.textContent = "This browser cannot play the " + settings.format + " result; download it instead.";
    }
    if (stale()) return;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    const size = resultVideo.videoWidth ? resultVideo.videoWidth + "×" + resultVideo.videoHeight + " px, " : "";
    info.textContent = (info.textContent ? info.textContent + " " : "") + size + job.frames_done + " frames, " +
      seconds + " s";
    opts.setStatus("Done: " + file.name + " colorized.");
    opts.setState("done");
  }

  return {
    isVideo,
    start,
    clear,
    limitsText,
    setLimits(videoLimits) {
      limits = videoLimits || null;
    },
  };
};
