// Browser page of `colorization serve`: upload a photo to POST /colorize and show the result; with
// a hint-aware model, colour points placed on the result (hints.js) and a reference photo
// (reference.js) are sent along. A video goes to POST /videos instead and is followed to its result
// by video.js.
// Plain JavaScript, no external assets; everything talks to the same origin.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const fileInput = $("file-input");
  const dropZone = $("drop-zone");
  const saturation = $("saturation");
  const saturationValue = $("saturation-value");
  const sizeSelect = $("size");
  const formatSelect = $("format");
  const videoFormatSelect = $("video-format");
  const button = $("colorize-button");
  const statusEl = $("status");
  const errorEl = $("error");
  const results = $("results");
  const grayImage = $("gray-image");
  const resultImage = $("result-image");
  const compare = $("compare");
  const compareBefore = $("compare-before");
  const compareAfter = $("compare-after");
  const compareSlider = $("compare-slider");
  const download = $("download");
  const resultInfo = $("result-info");

  let currentFile = null;
  let maxUploadBytes = null;
  let controller = null;
  let resultUrl = null;
  let grayUrl = null;
  let timer = null;
  let videoMode = false; // the current file is a video

  // Re-colorize after `delay` ms (a newer call replaces a pending one).
  function scheduleColorize(delay) {
    clearTimeout(timer);
    timer = setTimeout(colorize, delay);
  }

  const hints = window.createHintEditor({ image: resultImage, onChange: scheduleColorize });
  const reference = window.createReferencePicker({ onChange: settingChanged });
  const videos = window.createVideoJobs({
    showError: (message) => {
      button.disabled = false;
      showError(message);
    },
    setStatus: (text) => {
      statusEl.textContent = text;
    },
    setState: (state) => {
      button.disabled = state === "busy";
      setState(state);
    },
    errorMessage,
  });

  function setState(state) {
    document.body.dataset.state = state;
  }

  // An error must not leave the previous photo's result on screen.
  function clearResult() {
    results.hidden = true;
    [resultImage, compareAfter].forEach((img) => img.removeAttribute("src"));
    download.removeAttribute("href");
    resultInfo.textContent = "";
    if (resultUrl) URL.revokeObjectURL(resultUrl);
    resultUrl = null;
  }

  // keepResult: the error concerns the colour points, so the photo and its last result stay on
  // screen for the user to fix them.
  function showError(message, keepResult) {
    if (!keepResult) {
      clearResult();
      videos.clear();
    }
    errorEl.textContent = message;
    errorEl.hidden = false;
    statusEl.textContent = "";
    setState("error");
  }

  function clearError() {
    errorEl.hidden = true;
    errorEl.textContent = "";
  }

  // Binary units, as the service's limits are set (20 MiB = 20 * 1024 * 1024 bytes).
  function formatBytes(n) {
    if (n >= 1048576) return Math.round(n / 1048576 * 10) / 10 + " MiB";
    return n >= 1024 ? Math.round(n / 1024) + " KiB" : n + " bytes";
  }

  async function loadHealth() {
    try {
      const response = await fetch("/health");
      if (!response.ok) return;
      const health = await response.json();
      maxUploadBytes = health.limits.max_upload_bytes;
      $("model-info").textContent = "Model: " + health.model + " on " + health.device + "." +
        (health.accepts_hints ? " It takes colour hints." : "");
      hints.enable(health.accepts_hints === true, health.limits.max_hints);
      reference.enable(health.accepts_reference === true);
      if (health.accepts_videos) videos.setLimits(health.limits.video);
      $("limits-hint").textContent =
        "Up to " + formatBytes(maxUploadBytes) + "; photos up to " +
        (health.limits.max_pixels / 1e6).toFixed(0) + " megapixels. " + videos.limitsText();
    } catch (err) {
      // The page still works without the limits hint.
    }
  }

  // Grayscale preview of the chosen photo, computed locally (Rec. 601 luma).
  async function makeGrayPreview(file) {
    const bitmap = await createImageBitmap(file);
    const canvas = document.createElement("canvas");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    bitmap.close();
    const data = ctx.getImageData(0, 0, canvas.width, canvas.height);
    const px = data.data;
    for (let i = 0; i < px.length; i += 4) {
      const y = Math.round(0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2]);
      px[i] = px[i + 1] = px[i + 2] = y;
    }
    ctx.putImageData(data, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
    if (grayUrl) URL.revokeObjectURL(grayUrl);
    grayUrl = URL.createObjectURL(blob);
    grayImage.src = grayUrl;
    compareBefore.src = grayUrl;
  }

  // kind: "photo" or "video" (the upload the answer is about).
  async function errorMessage(response, kind) {
    let detail = "";
    let code = "";
    try {
      const body = await response.json();
      detail = body.detail || body.error || "";
      code = body.error || "";
    } catch (err) {
      detail = "";
    }
    if (code === "invalid_hints" || code === "hints_not_supported") return "Colour points: " + detail;
    if (code.startsWith("reference_") || code === "invalid_reference") return "Reference photo: " + detail;
    if (response.status === 503) {
      const retry = response.headers.get("Retry-After");
      return "The server is busy. " + (detail || "") + (retry ? " (retry after " + retry + " s)" : "");
    }
    if (response.status === 413) return "Too large: " + (detail || "the upload exceeds the server's limit.");
    if (response.status === 415 && kind === "video") return "Not a video: " + (detail || "choose an MP4, WebM, MKV or MOV video.");
    if (response.status === 415) return "Not an image: " + (detail || "choose a JPEG, PNG or WebP photo.");
    if (response.status === 422) return "Cannot colorize: " + (detail || "invalid " + kind + " or settings.");
    return "Error " + response.status + ": " + (detail || response.statusText);
  }

  async function colorize() {
    if (!currentFile) return;
    clearError();
    if (maxUploadBytes !== null && currentFile.size > maxUploadBytes) {
      showError("Too large: " + currentFile.name + " is " + formatBytes(currentFile.size) +
                "; the limit is " + formatBytes(maxUploadBytes) + ".");
      return;
    }
    if (videoMode) {
      if (controller) controller.abort(); // a photo request still under way must not show up
      controller = null;
      clearTimeout(timer);
      await videos.start(currentFile, {
        saturation: saturation.value,
        format: videoFormatSelect.value,
        reference: reference.file(),
        referenceStrength: reference.strength(),
      });
      return;
    }
    if (controller) controller.abort();
    const mine = new AbortController();
    controller = mine;
    // A newer request (a setting or a colour point changed) supersedes this one: from then on
    // this one must neither show its result nor its failure.
    const superseded = () => controller !== mine;
    const form = new FormData();
    form.append("file", currentFile, currentFile.name);
    form.append("saturation", saturation.value);
    form.append("format", formatSelect.value);
    if (sizeSelect.value) form.append("size", sizeSelect.value);
    const sentHints = hints.key();
    if (sentHints) form.append("hints", hints.json());
    const referenceFile = reference.file();
    const sentReference = referenceFile ? referenceFile.name + "@" + reference.strength() : "";
    if (referenceFile) {
      form.append("reference", referenceFile, referenceFile.name);
      form.append("reference_strength", reference.strength());
    }
    statusEl.textContent = "Colorizing " + currentFile.name + "…";
    setState("busy");
    button.disabled = true;
    const started = performance.now();
    let response;
    let blob;
    try {
      response = await fetch("/colorize", { method: "POST", body: form, signal: mine.signal });
      if (response.ok) blob = await response.blob();
    } catch (err) {
      if (superseded()) return;
      button.disabled = false;
      showError("Could not reach the server: " + err.message);
      return;
    }
    if (superseded()) return;
    button.disabled = false;
    if (!response.ok) {
      const message = await errorMessage(response, "photo");
      if (superseded()) return;
      const aboutExtras = message.startsWith("Colour points:") || message.startsWith("Reference photo:");
      showError(message, aboutExtras && !results.hidden);
      return;
    }
    const url = URL.createObjectURL(blob);
    const disposition = response.headers.get("Content-Disposition") || "";
    const match = /filename="([^"]+)"/.exec(disposition);
    const previousUrl = resultUrl;
    resultUrl = url;
    download.href = url;
    download.download = match ? match[1] : "colorized.png";
    resultImage.src = url;
    compareAfter.src = url;
    try {
      await resultImage.decode();
    } catch (err) {
      if (superseded()) return;
      showError("The result could not be displayed.");
      return;
    } finally {
      if (previousUrl) URL.revokeObjectURL(previousUrl);
    }
    if (superseded()) return;
    results.hidden = false;
    reference.showResult(response.headers.get("X-Reference-Used"), response.headers.get("X-Reference-Match"));
    resultImage.dataset.hints = sentHints;
    resultImage.dataset.reference = sentReference;
    hints.imageChanged();
    const seconds = ((performance.now() - started) / 1000).toFixed(2);
    resultInfo.textContent = resultImage.naturalWidth + "×" + resultImage.naturalHeight + " px, " +
      blob.type + ", " + formatBytes(blob.size) + ", " + seconds + " s";
    statusEl.textContent = "Done: " + currentFile.name + " colorized.";
    setState("done");
  }

  // Photo-only controls (working resolution, image format) and the video format swap places.
  function setVideoMode(on) {
    videoMode = on;
    document.querySelectorAll(".photo-only").forEach((el) => { el.hidden = on; });
    document.querySelectorAll(".video-only").forEach((el) => { el.hidden = !on; });
    reference.videoMode(on);
  }

  async function chooseFile(file) {
    if (!file) return;
    currentFile = file;
    button.disabled = false;
    clearError();
    hints.clear();
    if (videos.isVideo(file)) {
      setVideoMode(true);
      clearResult();
      await colorize();
      return;
    }
    setVideoMode(false);
    videos.clear();
    try {
      await makeGrayPreview(file);
    } catch (err) {
      // The browser cannot decode it (e.g. TIFF); the server may still, so only the preview is lost.
      grayImage.removeAttribute("src");
      compareBefore.removeAttribute("src");
    }
    await colorize();
  }

  fileInput.addEventListener("change", () => chooseFile(fileInput.files[0]));
  button.addEventListener("click", colorize);

  ["dragenter", "dragover"].forEach((type) =>
    dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      dropZone.classList.add("dragging");
    })
  );
  ["dragleave", "drop"].forEach((type) =>
    dropZone.addEventListener(type, () => dropZone.classList.remove("dragging"))
  );
  dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) chooseFile(file);
  });

  saturation.addEventListener("input", () => {
    saturationValue.textContent = Number(saturation.value).toFixed(2);
  });
  // Re-colorize a photo when a setting is committed (debounced so a dragged slider sends one
  // request). A video is a long job: it is redone only when Colorize is pressed.
  function settingChanged(delay) {
    if (!videoMode) scheduleColorize(delay);
    else if (document.body.dataset.state !== "busy") {
      statusEl.textContent = "Settings changed: press Colorize to colorize the video again.";
    }
  }
  [saturation, sizeSelect, formatSelect, videoFormatSelect].forEach((el) =>
    el.addEventListener("change", () => settingChanged(250))
  );

  function updateCompare() {
    compare.style.setProperty("--position", compareSlider.value + "%");
  }
  compareSlider.addEventListener("input", updateCompare);
  updateCompare();

  setState("idle");
  loadHealth();
})();
