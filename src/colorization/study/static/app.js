// Rating page: asks the server for the next item of this rater, shows it, posts the rating.
// The page never learns which model (if any) produced an image: items are opaque ids.
(function () {
  "use strict";
  const RATER_RE = /^[A-Za-z0-9_-]{1,64}$/;
  const $ = (id) => document.getElementById(id);
  let rater = null;
  let current = null;
  let busy = false;

  function showError(msg) {
    const el = $("error");
    el.textContent = msg;
    el.hidden = !msg;
  }

  function setBusy(b) {
    busy = b;
    document.querySelectorAll(".rating").forEach((btn) => { btn.disabled = b; });
  }

  async function loadNext() {
    setBusy(true);
    const res = await fetch("/api/next?rater=" + encodeURIComponent(rater), { cache: "no-store" });
    if (!res.ok) { showError("Could not load the next photo (" + res.status + ")."); return; }
    const data = await res.json();
    $("progress").textContent = Math.min(data.position + 1, data.total) + " / " + data.total;
    if (data.done) {
      current = null;
      $("rate").hidden = true;
      $("done").hidden = false;
      document.body.dataset.state = "done";
      return;
    }
    current = data.item;
    const img = $("photo");
    img.onload = () => { setBusy(false); document.body.dataset.state = "ready"; };
    img.onerror = () => showError("Could not load the photo.");
    document.body.dataset.state = "loading";
    img.src = data.image;
  }

  async function submit(value) {
    if (busy || !current) return;
    setBusy(true);
    showError("");
    const res = await fetch("/api/rate", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ rater: rater, item: current, rating: value }),
    });
    if (!res.ok && res.status !== 409) {  // 409: already rated (e.g. a second tab): just move on
      showError("Could not save the rating (" + res.status + ").");
      setBusy(false);
      return;
    }
    await loadNext();
  }

  function start(id) {
    if (!RATER_RE.test(id)) { showError("Please enter a valid rater id."); return; }
    rater = id;
    try { localStorage.setItem("rater", id); } catch (e) { /* storage may be disabled */ }
    showError("");
    $("start").hidden = true;
    $("rate").hidden = false;
    loadNext();
  }

  document.querySelectorAll(".rating").forEach((btn) => {
    btn.addEventListener("click", () => submit(parseInt(btn.dataset.value, 10)));
  });
  document.addEventListener("keydown", (ev) => {
    if (!$("rate").hidden && ev.key >= "1" && ev.key <= "5") submit(parseInt(ev.key, 10));
  });
  $("begin").addEventListener("click", () => start($("rater").value.trim()));
  $("rater").addEventListener("keydown", (ev) => { if (ev.key === "Enter") start($("rater").value.trim()); });

  const fromUrl = new URLSearchParams(location.search).get("rater");
  let saved = null;
  try { saved = localStorage.getItem("rater"); } catch (e) { /* ignore */ }
  $("rater").value = fromUrl || saved || ("r-" + Math.random().toString(36).slice(2, 10));
})();
