// cloudfill serve: draw a mask over an image, restore it, download the result.
//
// The mask is a Uint8Array at the image's own resolution (1 = missing), edited
// by exact pixel stamps (no antialiasing), so what is drawn is what is sent.
// Every edit is one history entry: the indices it flipped and the value it set;
// undo flips them back, so history costs only what changed and has no limit.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const viewport = $("viewport"), stage = $("stage"), base = $("base"), after = $("after");
  const overlay = $("overlay"), outlineLayer = $("outlineLayer"), rectBox = $("rect");
  const S = {
    file: null, path: null, W: 0, H: 0, info: null, limits: null, shown: null,
    mask: null, overlayData: null, history: [], future: [],
    tool: "brush", size: 24, zoom: 1, panX: 0, panY: 0,
    restored: null, restoredName: null, showAfter: false, timeline: [], lastError: null,
  };
  const MASK_RGBA = [255, 60, 60, 130];

  function setState(state, text, isError) {
    document.body.dataset.state = state;
    if (text !== undefined) {
      $("status").textContent = text;
      $("status").className = isError ? "error" : "";
    }
  }

  // ---- view: zoom and pan ----------------------------------------------------
  function applyView() {
    stage.style.transform = `translate(${S.panX}px, ${S.panY}px) scale(${S.zoom})`;
    $("zoomText").textContent = Math.round(S.zoom * 100) + "%";
  }
  function zoomAt(factor, cx, cy) {
    const z = Math.min(64, Math.max(0.02, S.zoom * factor));
    S.panX = cx - (cx - S.panX) * (z / S.zoom);
    S.panY = cy - (cy - S.panY) * (z / S.zoom);
    S.zoom = z;
    applyView();
  }
  function fit() {
    if (!S.W) return;
    const r = viewport.getBoundingClientRect();
    S.zoom = 0.98 * Math.min(r.width / S.W, r.height / S.H);
    S.panX = (r.width - S.W * S.zoom) / 2;
    S.panY = (r.height - S.H * S.zoom) / 2;
    applyView();
  }
  function toImage(e) {
    const r = viewport.getBoundingClientRect();
    return [(e.clientX - r.left - S.panX) / S.zoom, (e.clientY - r.top - S.panY) / S.zoom];
  }

  // ---- the mask and its history ------------------------------------------------
  function setPixel(i, v) {
    S.mask[i] = v;
    const o = i * 4, d = S.overlayData.data;
    if (v) { d[o] = MASK_RGBA[0]; d[o + 1] = MASK_RGBA[1]; d[o + 2] = MASK_RGBA[2]; d[o + 3] = MASK_RGBA[3]; }
    else { d[o] = d[o + 1] = d[o + 2] = d[o + 3] = 0; }
  }
  function redraw(box) {
    const ctx = overlay.getContext("2d");
    if (box) {
      const x0 = Math.max(0, box[0]), y0 = Math.max(0, box[1]);
      const x1 = Math.min(S.W, box[2] + 1), y1 = Math.min(S.H, box[3] + 1);
      if (x1 > x0 && y1 > y0) ctx.putImageData(S.overlayData, 0, 0, x0, y0, x1 - x0, y1 - y0);
    } else {
      ctx.putImageData(S.overlayData, 0, 0);
    }
  }
  function maskCount() {
    let n = 0;
    for (let i = 0; i < S.mask.length; i++) n += S.mask[i];
    return n;
  }
  function commit(changed, value) {  // One history entry: the indices an edit flipped and their new value.
    push(changed.length ? [{ idx: Int32Array.from(changed), value: value }] : []);
  }
  function push(parts) {
    if (!parts.length) return;
    S.history.push(parts);
    S.future = [];
    editedAfterRestore();
    updateButtons();
  }
  function replay(parts, undoing) {
    for (const p of parts) {
      const v = undoing ? 1 - p.value : p.value;
      for (const i of p.idx) setPixel(i, v);
    }
    redraw();
    editedAfterRestore();
  }
  function undo() {
    if (!S.history.length) return;
    const a = S.history.pop();
    replay(a, true);
    S.future.push(a);
    updateButtons();
  }
  function redo() {
    if (!S.future.length) return;
    const a = S.future.pop();
    replay(a, false);
    S.history.push(a);
    updateButtons();
  }
  function setAll(bits) {  // bits: Uint8Array of 0/1 (a loaded mask, or Clear): one undoable entry.
    const on = [], off = [];
    for (let i = 0; i < bits.length; i++) {
      if (bits[i] !== S.mask[i]) { (bits[i] ? on : off).push(i); setPixel(i, bits[i]); }
    }
    redraw();
    const parts = [];
    if (on.length) parts.push({ idx: Int32Array.from(on), value: 1 });
    if (off.length) parts.push({ idx: Int32Array.from(off), value: 0 });
    push(parts);
  }

  // ---- drawing -----------------------------------------------------------------
  let stroke = null, panning = null, spaceDown = false;
  function stamp(cx, cy, value, st) {
    const r = S.size / 2, r2 = r * r;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(S.W - 1, Math.ceil(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(S.H - 1, Math.ceil(cy + r));
    for (let y = y0; y <= y1; y++) {
      const dy = y + 0.5 - cy;
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx;
        if (dx * dx + dy * dy > r2) continue;
        const i = y * S.W + x;
        if (S.mask[i] !== value) { setPixel(i, value); st.changed.push(i); }
      }
    }
    st.box = st.box ? [Math.min(st.box[0], x0), Math.min(st.box[1], y0), Math.max(st.box[2], x1), Math.max(st.box[3], y1)]
                    : [x0, y0, x1, y1];
  }
  function segment(st, x, y) {
    const [px, py] = st.last;
    const steps = Math.max(1, Math.ceil(Math.hypot(x - px, y - py) / Math.max(0.5, S.size / 4)));
    for (let k = 1; k <= steps; k++) stamp(px + (x - px) * k / steps, py + (y - py) * k / steps, st.value, st);
    st.last = [x, y];
    redraw(st.box);
    st.box = null;
  }
  function fillRect(a, b) {
    const x0 = Math.max(0, Math.floor(Math.min(a[0], b[0]))), x1 = Math.min(S.W - 1, Math.floor(Math.max(a[0], b[0])));
    const y0 = Math.max(0, Math.floor(Math.min(a[1], b[1]))), y1 = Math.min(S.H - 1, Math.floor(Math.max(a[1], b[1])));
    const changed = [];
    for (let y = y0; y <= y1; y++) for (let x = x0; x <= x1; x++) {
      const i = y * S.W + x;
      if (!S.mask[i]) { setPixel(i, 1); changed.push(i); }
    }
    redraw([x0, y0, x1, y1]);
    commit(changed, 1);
  }
  viewport.addEventListener("pointerdown", (e) => {
    if (!S.mask) return;
    viewport.setPointerCapture(e.pointerId);
    if (S.tool === "pan" || spaceDown || e.button === 1) {
      panning = { x: e.clientX, y: e.clientY, px: S.panX, py: S.panY };
      return;
    }
    if (e.button !== 0) return;
    const p = toImage(e);
    if (S.tool === "rect") {
      stroke = { rect: p };
      Object.assign(rectBox.style, { display: "block", left: p[0] + "px", top: p[1] + "px", width: "0px", height: "0px" });
      return;
    }
    stroke = { value: S.tool === "eraser" ? 0 : 1, changed: [], last: p, box: null };
    stamp(p[0], p[1], stroke.value, stroke);
    redraw(stroke.box);
    stroke.box = null;
  });
  viewport.addEventListener("pointermove", (e) => {
    if (panning) {
      S.panX = panning.px + e.clientX - panning.x;
      S.panY = panning.py + e.clientY - panning.y;
      applyView();
      return;
    }
    if (!stroke) return;
    const p = toImage(e);
    if (stroke.rect) {
      const a = stroke.rect;
      Object.assign(rectBox.style, { left: Math.min(a[0], p[0]) + "px", top: Math.min(a[1], p[1]) + "px",
                                     width: Math.abs(p[0] - a[0]) + "px", height: Math.abs(p[1] - a[1]) + "px" });
      return;
    }
    segment(stroke, p[0], p[1]);
  });
  function endStroke(e) {
    if (panning) { panning = null; return; }
    if (!stroke) return;
    const st = stroke;
    stroke = null;
    if (st.rect) {
      rectBox.style.display = "none";
      fillRect(st.rect, toImage(e));
      return;
    }
    commit(st.changed, st.value);
  }
  viewport.addEventListener("pointerup", endStroke);
  viewport.addEventListener("pointercancel", endStroke);
  viewport.addEventListener("wheel", (e) => {
    e.preventDefault();
    const r = viewport.getBoundingClientRect();
    zoomAt(e.deltaY < 0 ? 1.2 : 1 / 1.2, e.clientX - r.left, e.clientY - r.top);
  }, { passive: false });

  function setTool(t) {
    S.tool = t;
    for (const name of ["brush", "eraser", "rect", "pan"]) $("tool-" + name).classList.toggle("on", name === t);
    viewport.classList.toggle("pan", t === "pan");
  }
  document.addEventListener("keydown", (e) => {
    if (e.target && e.target.tagName === "INPUT" && ["text", "number"].includes(e.target.type)) return;
    const k = e.key.toLowerCase(), mod = e.ctrlKey || e.metaKey;
    if (mod && k === "z" && !e.shiftKey) { e.preventDefault(); undo(); }
    else if (mod && (k === "y" || (k === "z" && e.shiftKey))) { e.preventDefault(); redo(); }
    else if (!mod && k === " ") { spaceDown = true; e.preventDefault(); }
    else if (!mod && k === "b") setTool("brush");
    else if (!mod && k === "e") setTool("eraser");
    else if (!mod && k === "r") setTool("rect");
    else if (!mod && k === "p") setTool("pan");
    else if (!mod && k === "a" && S.restored) toggleAfter();
  });
  document.addEventListener("keyup", (e) => { if (e.key === " ") spaceDown = false; });

  // ---- talking to the server ----------------------------------------------------
  async function post(url, form) {
    const r = await fetch(url, { method: "POST", body: form });
    if (!r.ok) {
      let reason = r.status + " " + r.statusText;
      try { const j = await r.json(); reason = j.reason || reason; } catch (err) { /* not JSON */ }
      S.lastError = reason;
      throw new Error(reason);
    }
    return r;
  }
  function imageForm() {
    const f = new FormData();
    if (S.file) f.append("image", S.file, S.file.name || "image");
    else f.append("path", S.path);
    return f;
  }
  function stretchFields(f, withLimits) {
    const bands = S.info.bands >= 3 ? [$("bandR").value, $("bandG").value, $("bandB").value] : [$("bandR").value];
    f.append("bands", bands.join(","));
    if (withLimits && S.limits) f.append("limits", JSON.stringify(S.limits));
    else f.append("percentiles", $("pctLo").value + "," + $("pctHi").value);
    return f;
  }
  function bandOptions(n, shown) {
    ["bandR", "bandG", "bandB"].forEach((id, k) => {
      const sel = $(id);
      sel.innerHTML = "";
      for (let b = 1; b <= n; b++) sel.add(new Option(String(b), String(b)));
      sel.value = String(shown[Math.min(k, shown.length - 1)]);
      sel.hidden = n < 3 && k > 0;
    });
  }

  async function openImage(first) {
    setState("loading", "Loading…");
    const f = imageForm();
    if (!first) stretchFields(f, false);
    else if (S.file === null) { /* percentiles chosen by the server */ }
    const r = await post("/v1/display", f);
    const info = JSON.parse(r.headers.get("X-Cloudfill-Info"));
    base.src = URL.createObjectURL(await r.blob());
    await base.decode();
    S.info = info; S.limits = info.limits; S.shown = info.shown;
    if (first) {
      S.W = info.width; S.H = info.height;
      for (const el of [overlay, outlineLayer]) { el.width = S.W; el.height = S.H; }
      for (const el of [base, after, overlay, outlineLayer]) { el.style.width = S.W + "px"; el.style.height = S.H + "px"; }
      S.mask = new Uint8Array(S.W * S.H);
      S.overlayData = overlay.getContext("2d").createImageData(S.W, S.H);
      S.history = []; S.future = [];
      resetResult();
      redraw();
      bandOptions(info.bands, info.shown);
      if (info.dtype === "uint8") { $("pctLo").value = 0; $("pctHi").value = 100; }
      else { $("pctLo").value = 2; $("pctHi").value = 98; }
      fit();
    } else if (S.restored) {
      await showRestored();
    }
    updateButtons();
    setState("loaded", `${info.name}: ${info.width}×${info.height}, ${info.bands} band(s), ${info.dtype}` +
             (info.crs ? ", georeferenced" : "") + ". Draw the missing area, then Restore.");
  }

  async function loadMask(file, path) {
    const f = new FormData();
    if (file) f.append("mask", file, file.name); else f.append("mask_path", path);
    f.append("size", S.W + "," + S.H);
    const r = await post("/v1/mask", f);
    const img = new Image();
    img.src = URL.createObjectURL(await r.blob());
    await img.decode();
    const c = document.createElement("canvas");
    c.width = S.W; c.height = S.H;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, S.W, S.H).data, bits = new Uint8Array(S.W * S.H);
    for (let i = 0; i < bits.length; i++) bits[i] = d[i * 4] > 127 ? 1 : 0;
    setAll(bits);
    setState("loaded", `Mask loaded: ${maskCount()} missing pixels.`);
  }

  function maskPng() {  // Missing = opaque white, known = transparent black (all zero).
    const c = document.createElement("canvas");
    c.width = S.W; c.height = S.H;
    const ctx = c.getContext("2d"), img = ctx.createImageData(S.W, S.H), d = img.data;
    for (let i = 0; i < S.mask.length; i++) if (S.mask[i]) d[i * 4] = d[i * 4 + 1] = d[i * 4 + 2] = d[i * 4 + 3] = 255;
    ctx.putImageData(img, 0, 0);
    return new Promise((resolve) => c.toBlob(resolve, "image/png"));
  }

  function stem() { return (S.info && S.info.name || "image").replace(/\.[^.]*$/, ""); }

  async function restore() {
    const t0 = performance.now();
    S.timeline = [{ state: "start", t: 0 }];
    setState("working", "Restoring: preview…");
    $("restore").disabled = true;
    try {
      const mask = await maskPng();
      const form = () => { const f = imageForm(); f.append("mask", mask, "mask.png"); return f; };
      const pr = await post("/v1/preview", stretchFields(form(), true));
      after.src = URL.createObjectURL(await pr.blob());
      await after.decode();
      showAfter(true);
      S.timeline.push({ state: "preview", t: performance.now() - t0, width: after.naturalWidth });
      setState("preview", `Preview (1/${pr.headers.get("X-Cloudfill-Factor")} resolution) in ` +
               `${Math.round(performance.now() - t0)} ms; full resolution…`);
      const rr = await post("/v1/restore", form());
      const cd = rr.headers.get("Content-Disposition") || "";
      S.restoredName = (cd.match(/filename="([^"]+)"/) || [null, stem() + ".tif"])[1];
      S.restored = await rr.blob();
      await showRestored();
      S.timeline.push({ state: "done", t: performance.now() - t0, width: after.naturalWidth });
      const dl = $("downloadRestored");
      dl.href = URL.createObjectURL(S.restored); dl.download = S.restoredName; dl.setAttribute("aria-disabled", "false");
      dl.textContent = "restored file (" + S.restoredName + ")";
      drawOutline();
      setState("done", `Restored ${rr.headers.get("X-Cloudfill-Missing")} pixels through ` +
               `${rr.headers.get("X-Cloudfill-Windows")} window(s) in ${Math.round(performance.now() - t0)} ms.`);
    } catch (err) {
      setState("error", "Restore failed: " + err.message, true);
    } finally {
      updateButtons();
    }
  }

  async function showRestored() {
    const f = new FormData();
    f.append("image", S.restored, S.restoredName);
    const r = await post("/v1/display", stretchFields(f, true));
    after.src = URL.createObjectURL(await r.blob());
    await after.decode();
    showAfter(true);
  }

  function drawOutline() {
    const ctx = outlineLayer.getContext("2d"), img = ctx.createImageData(S.W, S.H), d = img.data, m = S.mask, W = S.W, H = S.H;
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) {
      const i = y * W + x;
      if (!m[i]) continue;
      if ((x > 0 && !m[i - 1]) || (x < W - 1 && !m[i + 1]) || (y > 0 && !m[i - W]) || (y < H - 1 && !m[i + W])) {
        d[i * 4] = 255; d[i * 4 + 1] = 230; d[i * 4 + 2] = 0; d[i * 4 + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    outlineLayer.hidden = !$("outline").checked;
  }

  function showAfter(on) {
    S.showAfter = on;
    after.hidden = !on;
    overlay.hidden = on;
    $("beforeAfter").textContent = on ? "Before" : "After";
    $("beforeAfter").classList.toggle("on", on);
  }
  function toggleAfter() { showAfter(!S.showAfter); }
  function editedAfterRestore() {
    if (S.showAfter) showAfter(false);
    outlineLayer.hidden = true;
  }
  function resetResult() {
    S.restored = null; S.restoredName = null;
    after.hidden = true; after.removeAttribute("src"); outlineLayer.hidden = true; overlay.hidden = false;
    $("downloadRestored").setAttribute("aria-disabled", "true");
    $("downloadRestored").textContent = "restored file";
  }
  function updateButtons() {
    $("undo").disabled = !S.history.length;
    $("redo").disabled = !S.future.length;
    $("restore").disabled = !S.mask || document.body.dataset.state === "working" || document.body.dataset.state === "preview";
    $("beforeAfter").disabled = !after.getAttribute("src");
    $("downloadMask").setAttribute("aria-disabled", S.mask ? "false" : "true");
  }

  // ---- wiring --------------------------------------------------------------------
  const guard = (fn) => async (...a) => { try { await fn(...a); } catch (err) { setState("error", err.message, true); } };
  $("imageFile").addEventListener("change", guard(async (e) => {
    if (!e.target.files.length) return;
    S.file = e.target.files[0]; S.path = null; $("rootImage").value = "";
    await openImage(true);
  }));
  $("rootImage").addEventListener("change", guard(async (e) => {
    if (!e.target.value) return;
    S.path = e.target.value; S.file = null;
    await openImage(true);
  }));
  $("maskFile").addEventListener("change", guard(async (e) => { if (e.target.files.length && S.mask) await loadMask(e.target.files[0], null); }));
  $("rootMask").addEventListener("change", guard(async (e) => { if (e.target.value && S.mask) await loadMask(null, e.target.value); }));
  for (const t of ["brush", "eraser", "rect", "pan"]) $("tool-" + t).addEventListener("click", () => setTool(t));
  $("brushSize").addEventListener("input", (e) => { S.size = +e.target.value; $("brushSizeText").textContent = e.target.value; });
  $("undo").addEventListener("click", undo);
  $("redo").addEventListener("click", redo);
  $("clearMask").addEventListener("click", () => { if (S.mask) setAll(new Uint8Array(S.mask.length)); });
  $("zoomIn").addEventListener("click", () => { const r = viewport.getBoundingClientRect(); zoomAt(1.25, r.width / 2, r.height / 2); });
  $("zoomOut").addEventListener("click", () => { const r = viewport.getBoundingClientRect(); zoomAt(0.8, r.width / 2, r.height / 2); });
  $("zoomFit").addEventListener("click", fit);
  $("applyStretch").addEventListener("click", guard(async () => { if (S.info) await openImage(false); }));
  $("restore").addEventListener("click", restore);
  $("beforeAfter").addEventListener("click", toggleAfter);
  $("outline").addEventListener("change", (e) => { outlineLayer.hidden = !e.target.checked || !S.restored; });
  $("downloadMask").addEventListener("click", guard(async (e) => {
    e.preventDefault();
    if (!S.mask) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await maskPng()); a.download = stem() + "_mask.png";
    document.body.appendChild(a); a.click(); a.remove();
  }));

  fetch("/healthz").then((r) => r.json()).then((h) => {
    $("hint").textContent = `model ${h.model.name} ${h.model.version} · ${h.model.bands} bands · Ctrl+Z / Ctrl+Y`;
    if (!h.root) return;
    return fetch("/v1/files").then((r) => r.json()).then((j) => {
      for (const sel of [$("rootImage"), $("rootMask")]) {
        for (const f of j.files) sel.add(new Option(f, f));
        sel.hidden = false;
      }
    });
  }).catch(() => {});

  // For tests and scripts: read-only views of the page's state.
  window.cloudfill = {
    maskCount: () => (S.mask ? maskCount() : 0),
    history: () => [S.history.length, S.future.length],
    size: () => [S.W, S.H],
    view: () => ({ zoom: S.zoom, panX: S.panX, panY: S.panY }),
    timeline: () => S.timeline.slice(),
    lastError: () => S.lastError,
  };
  applyView();
})();
