// Colour-hint editor of the `colorization serve` page (app.js creates it): colour points placed
// on the colorized result with the mouse (click to place, drag to move) or the keyboard (arrow keys
// move a cursor, Enter places a point), a colour picker, "take the colour the model predicts here",
// delete, and an accessible list of the points. It only keeps the points; app.js sends them with
// each request (`hints.json()`) and is told to re-colorize through `onChange(delayMs)`.
//
// Points live in the result image's pixel coordinates (its natural size: the upload's size after
// the EXIF orientation, which is what the server expects). The selected point is the one the
// colour picker, the buttons, the arrow keys and Delete act on.
// Plain JavaScript, no external assets.
"use strict";

window.createHintEditor = function (options) {
  const $ = (id) => document.getElementById(id);
  const resultImage = options.image;
  const scheduleColorize = options.onChange;
  const hintArea = $("hint-area");
  const hintMarkers = $("hint-markers");
  const hintCursor = $("hint-cursor");
  const hintPanel = $("hint-panel");
  const hintColor = $("hint-color");
  const hintPredicted = $("hint-predicted");
  const hintDelete = $("hint-delete");
  const hintClear = $("hint-clear");
  const hintSelection = $("hint-selection");
  const hintList = $("hint-list");
  const hintEmpty = $("hint-empty");
  const hintPosition = $("hint-position");

  let hintsEnabled = false;
  let maxHints = 256;
  let points = []; // {id, x, y, color: "#rrggbb"}
  let nextId = 1;
  let selectedId = null;
  let cursor = null; // keyboard cursor {x, y}
  let drag = null; // {id, pointerId, moved, created}
  // The shown result's size, kept here because the <img>'s natural size can read 0 while the next
  // result loads (keys and clicks in that moment must still work, markers must not flicker).
  let hintSize = null;

  function imageSize() {
    return hintSize;
  }

  function hintKey() {
    return points.map((p) => p.x + "," + p.y + "," + p.color).join(";");
  }

  function pointIndex(id) {
    return points.findIndex((p) => p.id === id);
  }

  function selected() {
    const i = pointIndex(selectedId);
    return i < 0 ? null : points[i];
  }

  function describe(p) {
    return "Point " + (pointIndex(p.id) + 1) + " at x " + p.x + ", y " + p.y + ", colour " + p.color;
  }

  function announce(text) {
    hintPosition.textContent = text;
  }

  function clampToImage(x, y) {
    const s = imageSize();
    return {
      x: Math.min(s.w - 1, Math.max(0, Math.round(x))),
      y: Math.min(s.h - 1, Math.max(0, Math.round(y))),
    };
  }

  function enableHints(on, max) {
    hintsEnabled = on;
    if (max) maxHints = max;
    hintPanel.hidden = !on;
    hintArea.classList.toggle("enabled", on);
    if (on) {
      hintArea.tabIndex = 0;
      hintArea.setAttribute("role", "application");
      hintArea.setAttribute("aria-roledescription", "colour-point editor");
      hintArea.setAttribute("aria-label", "Colorized result: place and move colour points");
      hintArea.setAttribute("aria-describedby", "hint-help hint-selection");
    } else {
      ["tabindex", "role", "aria-roledescription", "aria-label", "aria-describedby"].forEach((a) =>
        hintArea.removeAttribute(a)
      );
    }
    render();
  }

  function placeAt(el, x, y, size) {
    el.style.left = ((x + 0.5) / size.w) * 100 + "%";
    el.style.top = ((y + 0.5) / size.h) * 100 + "%";
  }

  function renderList() {
    const active = document.activeElement;
    const refocus = active && hintList.contains(active) ? [active.dataset.id, active.dataset.action] : null;
    hintList.replaceChildren(
      ...points.map((p, i) => {
        const li = document.createElement("li");
        const pick = document.createElement("button");
        pick.type = "button";
        pick.className = "hint-item";
        pick.dataset.id = String(p.id);
        pick.dataset.action = "select";
        pick.setAttribute("aria-pressed", String(p.id === selectedId));
        const swatch = document.createElement("span");
        swatch.className = "swatch";
        swatch.style.backgroundColor = p.color;
        swatch.setAttribute("aria-hidden", "true");
        pick.append(swatch, document.createTextNode("Point " + (i + 1) + ": x " + p.x + ", y " + p.y + ", " + p.color));
        const remove = document.createElement("button");
        remove.type = "button";
        remove.className = "hint-remove";
        remove.dataset.id = String(p.id);
        remove.dataset.action = "delete";
        remove.textContent = "Delete";
        remove.setAttribute("aria-label", "Delete point " + (i + 1));
        li.append(pick, remove);
        return li;
      })
    );
    if (refocus) {
      const again = hintList.querySelector('[data-id="' + refocus[0] + '"][data-action="' + refocus[1] + '"]');
      if (again) again.focus();
    }
  }

  function render() {
    const size = imageSize();
    const current = selected();
    hintMarkers.replaceChildren();
    if (size && hintsEnabled) {
      points.forEach((p) => {
        const marker = document.createElement("div");
        marker.className = "hint-marker" + (p.id === selectedId ? " selected" : "");
        marker.style.backgroundColor = p.color;
        placeAt(marker, p.x, p.y, size);
        hintMarkers.append(marker);
      });
      if (cursor) placeAt(hintCursor, cursor.x, cursor.y, size);
    }
    renderList();
    hintList.dataset.points = hintKey();
    hintEmpty.hidden = points.length > 0;
    hintDelete.disabled = !current;
    hintClear.disabled = points.length === 0;
    hintSelection.textContent = current
      ? "Selected: " + describe(current).toLowerCase() + ". The colour picker and the buttons act on it."
      : points.length >= maxHints
        ? "At most " + maxHints + " points: delete one to place another."
        : "No point selected: a new point takes the colour in the picker.";
  }

  function selectPoint(id) {
    selectedId = id;
    const p = selected();
    if (p) {
      cursor = { x: p.x, y: p.y };
      hintColor.value = p.color;
    }
    render();
  }

  function addPoint(x, y) {
    if (points.length >= maxHints) {
      announce("At most " + maxHints + " points.");
      return null;
    }
    const p = { id: nextId++, x: x, y: y, color: hintColor.value };
    points.push(p);
    selectPoint(p.id);
    return p;
  }

  function removePoint(id) {
    const i = pointIndex(id);
    if (i < 0) return;
    const [p] = points.splice(i, 1);
    if (selectedId === id) selectedId = null;
    render();
    announce("Point " + (i + 1) + " at x " + p.x + ", y " + p.y + " deleted; " + points.length + " left.");
    scheduleColorize(0);
  }

  function clearPoints() {
    points = [];
    selectedId = null;
    cursor = null;
    drag = null;
    hintSize = null;
    render();
  }

  // A new result: keep the points inside it and the cursor on it.
  function hintImageChanged() {
    if (!resultImage.naturalWidth || !resultImage.naturalHeight) return;
    hintSize = { w: resultImage.naturalWidth, h: resultImage.naturalHeight };
    const size = hintSize;
    points.forEach((p) => Object.assign(p, clampToImage(p.x, p.y)));
    if (!cursor || cursor.x >= size.w || cursor.y >= size.h) cursor = clampToImage(size.w / 2, size.h / 2);
    render();
  }

  // The colour of the current result at (x, y), read through a 1x1 canvas (same-origin blob: URL).
  function resultColor(x, y) {
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = 1;
    const ctx = canvas.getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(resultImage, x, y, 1, 1, 0, 0, 1, 1);
    const d = ctx.getImageData(0, 0, 1, 1).data;
    return "#" + [d[0], d[1], d[2]].map((v) => v.toString(16).padStart(2, "0")).join("");
  }

  function eventPixel(event) {
    const rect = resultImage.getBoundingClientRect();
    const size = imageSize();
    return clampToImage(
      Math.floor(((event.clientX - rect.left) / rect.width) * size.w),
      Math.floor(((event.clientY - rect.top) / rect.height) * size.h)
    );
  }

  // The point whose marker is nearest to the pointer, within 12 CSS pixels.
  function hitTest(event) {
    const rect = resultImage.getBoundingClientRect();
    const size = imageSize();
    let best = null;
    let bestDistance = 12;
    points.forEach((p) => {
      const px = rect.left + ((p.x + 0.5) / size.w) * rect.width;
      const py = rect.top + ((p.y + 0.5) / size.h) * rect.height;
      const d = Math.hypot(event.clientX - px, event.clientY - py);
      if (d <= bestDistance) {
        best = p;
        bestDistance = d;
      }
    });
    return best;
  }

  hintArea.addEventListener("pointerdown", (event) => {
    if (!hintsEnabled || !imageSize() || event.button !== 0) return;
    event.preventDefault(); // no image drag, no text selection
    hintArea.focus({ preventScroll: true });
    let p = hitTest(event);
    const created = !p;
    if (created) {
      const at = eventPixel(event);
      p = addPoint(at.x, at.y);
      if (!p) return;
      announce(describe(p) + " placed.");
    } else {
      selectPoint(p.id);
    }
    drag = { id: p.id, pointerId: event.pointerId, moved: false, created: created };
    hintArea.setPointerCapture(event.pointerId);
  });

  hintArea.addEventListener("pointermove", (event) => {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const p = points[pointIndex(drag.id)];
    if (!p) return;
    const at = eventPixel(event);
    if (at.x === p.x && at.y === p.y) return;
    p.x = at.x;
    p.y = at.y;
    cursor = { x: at.x, y: at.y };
    drag.moved = true;
    render();
  });

  function endDrag(event) {
    if (!drag || event.pointerId !== drag.pointerId) return;
    const done = drag;
    drag = null;
    const p = points[pointIndex(done.id)];
    if (p && done.moved) announce(describe(p) + ".");
    if (done.moved || done.created) scheduleColorize(0);
  }
  hintArea.addEventListener("pointerup", endDrag);
  hintArea.addEventListener("pointercancel", endDrag);

  const ARROWS = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1] };

  hintArea.addEventListener("keydown", (event) => {
    const size = imageSize();
    if (!hintsEnabled || !size || event.altKey || event.ctrlKey || event.metaKey) return;
    const p = selected();
    if (!cursor) cursor = clampToImage(size.w / 2, size.h / 2);
    if (event.key in ARROWS) {
      event.preventDefault();
      const step = Math.max(1, Math.round(Math.max(size.w, size.h) / 100)) * (event.shiftKey ? 10 : 1);
      const [dx, dy] = ARROWS[event.key];
      cursor = clampToImage(cursor.x + dx * step, cursor.y + dy * step);
      if (p) {
        p.x = cursor.x;
        p.y = cursor.y;
        announce(describe(p) + ".");
        scheduleColorize(600); // once the key is released for a moment
      } else {
        announce("Cursor at x " + cursor.x + ", y " + cursor.y + ".");
      }
      render();
    } else if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      if (p) {
        selectedId = null;
        render();
        announce(describe(p) + " let go; the arrow keys move the cursor.");
      } else {
        const q = addPoint(cursor.x, cursor.y);
        if (q) {
          announce(describe(q) + " placed and selected: the arrow keys move it, Enter lets it go.");
          scheduleColorize(0);
        }
      }
    } else if (event.key === "Escape" && p) {
      event.preventDefault();
      selectedId = null;
      render();
      announce(describe(p) + " let go.");
    } else if ((event.key === "Delete" || event.key === "Backspace") && p) {
      event.preventDefault();
      removePoint(p.id);
    }
  });

  hintList.addEventListener("click", (event) => {
    const target = event.target.closest("button[data-id]");
    if (!target) return;
    const id = Number(target.dataset.id);
    if (target.dataset.action === "delete") {
      const i = pointIndex(id);
      removePoint(id);
      const next = hintList.querySelectorAll("button.hint-item")[Math.min(i, points.length - 1)];
      (next || hintArea).focus();
    } else {
      selectPoint(selectedId === id ? null : id);
    }
  });

  hintList.addEventListener("keydown", (event) => {
    const target = event.target.closest("button.hint-item");
    if (!target || (event.key !== "Delete" && event.key !== "Backspace")) return;
    event.preventDefault();
    const id = Number(target.dataset.id);
    const i = pointIndex(id);
    removePoint(id);
    const next = hintList.querySelectorAll("button.hint-item")[Math.min(i, points.length - 1)];
    (next || hintArea).focus();
  });

  hintColor.addEventListener("input", () => {
    const p = selected();
    if (!p) return;
    p.color = hintColor.value;
    render();
  });
  hintColor.addEventListener("change", () => {
    const p = selected();
    if (!p) return;
    p.color = hintColor.value;
    render();
    announce(describe(p) + ".");
    scheduleColorize(0);
  });

  hintPredicted.addEventListener("click", () => {
    const size = imageSize();
    if (!size) return;
    if (!resultImage.complete || !resultImage.naturalWidth) {
      announce("The result is being updated; try again in a moment.");
      return;
    }
    const p = selected();
    const at = p || cursor || clampToImage(size.w / 2, size.h / 2);
    const c = resultColor(at.x, at.y);
    hintColor.value = c;
    if (p) {
      p.color = c;
      render();
      announce(describe(p) + ": the colour the model predicts there.");
      scheduleColorize(0);
    } else {
      announce("The model predicts " + c + " at x " + at.x + ", y " + at.y + "; new points take it.");
    }
  });

  hintDelete.addEventListener("click", () => {
    const p = selected();
    if (p) removePoint(p.id);
  });

  hintClear.addEventListener("click", () => {
    if (!points.length) return;
    const n = points.length;
    points = [];
    selectedId = null;
    render();
    announce(n + " colour points deleted.");
    scheduleColorize(0);
  });

  render();

  return {
    // Show (true) or hide the editor; `max`: the server's point limit.
    enable: enableHints,
    // "x,y,#rrggbb;..." of the points to send ("" when hints are off or there are none).
    key: () => (hintsEnabled ? hintKey() : ""),
    // The `hints` form field: JSON [{x, y, color}, ...].
    json: () => JSON.stringify(points.map((p) => ({ x: p.x, y: p.y, color: p.color }))),
    // A new result is shown: adopt its size.
    imageChanged: hintImageChanged,
    // Another photo: drop every point.
    clear: clearPoints,
  };
};
