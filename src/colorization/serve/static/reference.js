// Reference photo of the `colorization serve` page (app.js creates it): "add a reference photo"
// chooses a colour photo whose colours the result takes where the two match; it is shown beside the
// photo's result with what the server said of the match (the X-Reference-Used / X-Reference-Match
// headers), or beside the video's result (a video sends it with the upload: it serves every shot).
// It only keeps the file and the strength; app.js sends them with each request (`file()`,
// `strength()`) and is told to re-colorize through `onChange(delayMs)`.
// Plain JavaScript, no external assets.
"use strict";

window.createReferencePicker = function (options) {
  const $ = (id) => document.getElementById(id);
  const scheduleColorize = options.onChange;
  const control = $("reference-control");
  const input = $("reference-input");
  const choose = $("reference-choose");
  const remove = $("reference-remove");
  const strength = $("reference-strength");
  const strengthValue = $("reference-strength-value");
  const figure = $("reference-figure");
  const image = $("reference-image");
  const caption = $("reference-caption");
  const videoFigure = $("video-reference-figure");
  const videoImage = $("video-reference-image");
  const videoCaption = $("video-reference-caption");

  let enabled = false;
  let videoMode = false;
  let file = null;
  let url = null;

  function show() {
    control.hidden = !enabled;
    const on = enabled && file !== null;
    figure.hidden = !on || videoMode;
    videoFigure.hidden = !on || !videoMode;
    figure.parentElement.classList.toggle("with-reference", on && !videoMode);
    videoFigure.parentElement.classList.toggle("with-reference", on && videoMode);
    remove.hidden = file === null;
    choose.textContent = file === null ? "Add a reference photo…" : "Choose another reference photo…";
  }

  function setFile(next) {
    file = next;
    if (url) URL.revokeObjectURL(url);
    url = null;
    if (file) {
      url = URL.createObjectURL(file);
      [image, videoImage].forEach((img) => {
        img.src = url;
        img.alt = "Reference photo " + file.name;
      });
      caption.textContent = "Reference photo: " + file.name;
      videoCaption.textContent = "Reference photo: " + file.name + " (matched at the start of every shot)";
    } else {
      [image, videoImage].forEach((img) => img.removeAttribute("src"));
      caption.textContent = "Reference photo";
    }
    show();
  }

  input.addEventListener("change", () => {
    if (!input.files[0]) return;
    setFile(input.files[0]);
    input.value = ""; // choosing the same file again is a change too
    scheduleColorize(0);
  });
  remove.addEventListener("click", () => {
    setFile(null);
    choose.focus();
    scheduleColorize(0);
  });
  strength.addEventListener("input", () => {
    strengthValue.textContent = Number(strength.value).toFixed(1);
  });
  strength.addEventListener("change", () => {
    if (file) scheduleColorize(250); // (for a video, app.js only says that Colorize redoes it)
  });

  return {
    // Show (true) or hide the control: only for a server whose model takes a reference.
    enable: (on) => {
      enabled = on;
      show();
    },
    // A video is chosen (true): the reference is shown beside the video result instead.
    videoMode: (on) => {
      videoMode = on;
      show();
    },
    // The chosen photo (a File) or null.
    file: () => (enabled ? file : null),
    // The reference_strength form field.
    strength: () => strength.value,
    // What the server said of the last result: used "true"/"false", share "0.270"; null: none sent.
    showResult: (used, share) => {
      if (!file) return;
      if (used === "true") {
        caption.textContent = "Reference photo: " + file.name + " (matched " +
          Math.round(Number(share) * 100) + " % of the photo; its colours are used there)";
      } else if (used === "false") {
        caption.textContent = "Reference photo: " + file.name +
          " did not match this photo with confidence; the colours are the automatic ones.";
      }
    },
  };
};
