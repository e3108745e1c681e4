// foldatlas web page: fold, view (3Dmol.js), compare, search and map. Plain JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const BANDS = [[90, "#0053d6"], [70, "#65cbf3"], [50, "#ffdb13"], [-1, "#ff7d45"]];
const bandColor = (p) => BANDS.find(([lo]) => p > lo)[1];
const state = { viewer: null, entry: null, map: null, samples: null, shownSample: null };
window.foldatlas = state; // read by the browser tests

function showMessage(text) {
  const box = $("message");
  box.textContent = text || "";
  box.hidden = !text;
}

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    const error = new Error(message);
    error.status = response.status;
    throw error;
  }
  return body;
}

function show(view) {
  for (const name of ["fold", "entry", "search", "map"]) $(`view-${name}`).hidden = name !== view;
  for (const a of document.querySelectorAll("[data-nav]")) {
    const target = a.getAttribute("href");
    a.classList.toggle("active", (view === "fold" && target === "/") || (view !== "fold" && target === `/${view}`));
  }
}

function navigate(url) {
  history.pushState({}, "", url);
  route();
}

async function route() {
  showMessage("");
  const path = location.pathname;
  const params = new URLSearchParams(location.search);
  try {
    if (path.startsWith("/entry/")) {
      show("entry");
      await showEntry(decodeURIComponent(path.slice("/entry/".length)));
    } else if (path === "/search") {
      show("search");
      await runSearchFromUrl(params);
    } else if (path === "/map") {
      show("map");
      await showMap(params);
    } else {
      show("fold");
      const sequence = params.get("sequence");
      if (sequence) {
        const header = params.get("fasta_header");
        $("sequence").value = header ? `>${header}\n${sequence}` : sequence;
        await fold();
      }
    }
  } catch (error) {
    showMessage(error.message);
  }
}

// ---- folding -------------------------------------------------------------------------------------------

async function fold() {
  const text = $("sequence").value.trim();
  if (!text) { showMessage("Paste a sequence first."); return; }
  const name = text.startsWith(">") ? text.slice(1).split(/\s/)[0] || "query" : "query";
  $("fold-button").disabled = true;
  $("fold-status").textContent = "Submitting...";
  try {
    let job = await api("/api/v1/fold", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sequence: text, name, wait: 0 }),
    });
    const started = Date.now();
    while (job.status === "queued" || job.status === "running") {
      $("fold-status").textContent = `${job.status === "queued" ? "Queued" : "Folding"} (${job.length} residues, ${Math.round((Date.now() - started) / 1000)} s)...`;
      await new Promise((r) => setTimeout(r, 700));
      job = await api(`/api/v1/jobs/${job.job_id}`);
    }
    if (job.status !== "done") throw new Error(`The fold failed: ${job.error}`);
    $("fold-status").textContent = job.cached ? "Found in the atlas." : `Folded in ${job.fold_seconds} s.`;
    navigate(`/entry/${encodeURIComponent(job.entry_id)}`);
  } catch (error) {
    $("fold-status").textContent = "";
    showMessage(error.message);
  } finally {
    $("fold-button").disabled = false;
  }
}

// ---- an entry ------------------------------------------------------------------------------------------

function showGeometry(geo) {
  // chain breaks and clashscore of the stored structure; the server's one-line warning when implausible
  $("entry-geometry").textContent = geo
    ? `${geo.chain_breaks} break${geo.chain_breaks === 1 ? "" : "s"}, clashscore ${geo.clashscore.toFixed(1)}`
    : "-";
  $("geometry-warning").textContent = geo && geo.warning ? `Warning: ${geo.warning}` : "";
  $("geometry-warning").hidden = !(geo && geo.warning);
}

async function showEntry(id) {
  hideSamples();
  const entry = await api(`/api/v1/entries/${encodeURIComponent(id)}?pae=true`);
  state.entry = entry;
  document.title = `${entry.id} - foldatlas`;
  $("entry-title").textContent = entry.id;
  $("entry-description").textContent = `${entry.description || ""} (${entry.kind}${entry.chains > 1 ? `, ${entry.chains} chains` : ""})`;
  $("entry-length").textContent = entry.length;
  $("mean-plddt").textContent = entry.mean_plddt == null ? "-" : entry.mean_plddt.toFixed(2);
  $("entry-ptm").textContent = entry.ptm == null ? "-" : entry.ptm.toFixed(3);
  $("entry-model").textContent = entry.model;
  showGeometry(entry.geometry);
  const base = `/api/v1/entries/${encodeURIComponent(entry.id)}`;
  $("dl-pdb").href = `${base}/structure.pdb?download=true`;
  $("dl-cif").href = `${base}/structure.cif?download=true`;
  $("dl-pae").href = `${base}/pae.json?download=true`;
  $("dl-pae").hidden = !entry.has_pae;
  $("dl-fasta").href = `${base}/sequence.fasta?download=true`;
  $("search-similar").href = `/search?entry=${encodeURIComponent(entry.id)}`;
  $("superpose-result").textContent = "";
  $("legend-reference").hidden = true;
  $("design-status").textContent = "";
  $("design-table").hidden = true;
  $("design-note").hidden = true;
  const pdb = await api(`${base}/structure.pdb`);
  drawStructure(pdb, entry.plddt != null);
  const hasPlddt = entry.plddt != null;
  $("plddt-plot").hidden = !hasPlddt;
  $("plddt-missing").hidden = hasPlddt;
  for (const item of document.querySelectorAll("[data-plddt-legend]")) item.hidden = !hasPlddt;
  drawPlddt(entry.plddt || []);
  drawPae(entry.predicted_aligned_error, entry.max_predicted_aligned_error);
  await showSamples(entry);
}

// ---- the samples of an entry (ESMFold2 draws several; the entry itself is the best one) ---------------

function hideSamples() {
  state.samples = null;
  state.shownSample = null;
  $("sample-stepper").hidden = true;
}

async function showSamples(entry) {
  if (entry.kind !== "predicted") return;
  const answer = await api(`/api/v1/entries/${encodeURIComponent(entry.id)}/samples`);
  if (state.entry !== entry) return; // another entry was opened meanwhile
  state.shownSample = answer.best_sample;
  if (answer.samples.length < 2) return;
  const best = answer.samples.findIndex((s) => s.sample === answer.best_sample);
  state.samples = { list: answer.samples, best: answer.best_sample, index: Math.max(0, best), loading: 0 };
  updateStepper();
  $("sample-stepper").hidden = false;
}

const score = (value, digits) => (value == null ? "-" : value.toFixed(digits));

function updateStepper() {
  const { list, best, index } = state.samples;
  const sample = list[index];
  const label = $("sample-label");
  label.textContent = `Sample ${index + 1} of ${list.length}, pTM ${score(sample.ptm, 3)}, `
    + `mean pLDDT ${score(sample.mean_plddt, 2)}`;
  label.dataset.sample = sample.sample;
  if (sample.sample === best) {
    const badge = document.createElement("span");
    badge.className = "best-badge";
    badge.textContent = "best";
    badge.title = "Highest ranking score: the entry's own structure";
    label.appendChild(badge);
  }
  $("sample-prev").disabled = index === 0;
  $("sample-next").disabled = index === list.length - 1;
  $("dl-sample-pdb").href = `${sample.links.pdb}?download=true`;
  $("dl-sample-cif").href = `${sample.links.cif}?download=true`;
}

async function stepSample(delta) {
  const samples = state.samples;
  const index = samples ? samples.index + delta : -1;
  if (!samples || index < 0 || index >= samples.list.length) return;
  samples.index = index;
  updateStepper();
  const sample = samples.list[index];
  const token = ++samples.loading;
  try {
    const pdb = await api(sample.links.pdb);
    if (state.samples !== samples || samples.loading !== token) return; // stepped again, or left the entry
    drawStructure(pdb, true);
    $("legend-reference").hidden = true;
    state.shownSample = sample.sample;
  } catch (error) {
    showMessage(error.message);
  }
}

function drawStructure(pdb, byPlddt, reference) {
  const element = $("viewer");
  if (!state.viewer) state.viewer = $3Dmol.createViewer(element, { backgroundColor: "white" });
  const viewer = state.viewer;
  viewer.clear();
  const model = viewer.addModel(pdb, "pdb");
  const colorfunc = (atom) => bandColor(atom.b);
  model.setStyle({}, { cartoon: byPlddt ? { colorfunc } : { color: "spectrum" } });
  if (reference) {
    const ref = viewer.addModel(reference, "pdb");
    ref.setStyle({}, { cartoon: { color: "#9a9a9a", opacity: 0.75 } });
  }
  viewer.zoomTo();
  viewer.render();
}

function drawPlddt(values) {
  const svg = $("plddt-plot");
  const W = 420, H = 180, L = 34, R = 8, T = 8, B = 24;
  const n = values.length;
  const x = (i) => L + (n > 1 ? (i / (n - 1)) * (W - L - R) : 0);
  const y = (v) => T + (1 - v / 100) * (H - T - B);
  let out = "";
  for (const [lo, hi, color] of [[90, 100, "#0053d6"], [70, 90, "#65cbf3"], [50, 70, "#ffdb13"], [0, 50, "#ff7d45"]]) {
    out += `<rect x="${L}" y="${y(hi)}" width="${W - L - R}" height="${y(lo) - y(hi)}" fill="${color}" opacity="0.15"/>`;
  }
  for (const v of [0, 50, 70, 90, 100]) {
    out += `<text x="${L - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end">${v}</text>`;
  }
  if (n) {
    const points = values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    out += `<polyline points="${points}" fill="none" stroke="#1d2330" stroke-width="1.2"/>`;
    out += `<text x="${L}" y="${H - 6}" font-size="10">1</text><text x="${W - R}" y="${H - 6}" font-size="10" text-anchor="end">${n}</text>`;
  }
  out += `<text x="${(W + L) / 2}" y="${H - 6}" font-size="10" text-anchor="middle">residue</text>`;
  svg.innerHTML = out;
}

function drawPae(matrix, maxPae) {
  const canvas = $("pae-canvas");
  const missing = !matrix || !matrix.length;
  $("pae-missing").hidden = !missing;
  canvas.parentElement.hidden = missing;
  if (missing) return;
  const n = matrix.length;
  const top = maxPae || 31.75;
  canvas.width = n;
  canvas.height = n;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(n, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      const t = Math.min(1, matrix[i][j] / top); // 0: dark green, 1: white (AlphaFold DB's scale)
      const k = 4 * (i * n + j);
      image.data[k] = 10 + t * 245;
      image.data[k + 1] = 95 + t * 160;
      image.data[k + 2] = 10 + t * 245;
      image.data[k + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  $("pae-max").textContent = `${top.toFixed(1)} Å`;
}

async function superpose(event) {
  event.preventDefault();
  const file = $("superpose-file").files[0];
  if (!file || !state.entry) { showMessage("Choose a PDB or mmCIF file first."); return; }
  const form = new FormData();
  form.append("entry_id", state.entry.id);
  form.append("file", file);
  if ($("superpose-chain").value.trim()) form.append("chain", $("superpose-chain").value.trim());
  $("superpose-result").textContent = "Superposing...";
  try {
    const result = await api("/api/v1/superpose", { method: "POST", body: form });
    state.superposition = result;
    $("superpose-result").innerHTML = `TM-score <b id="superpose-tm">${result.tm_score.toFixed(3)}</b> (by the experimental structure's length), `
      + `RMSD <b id="superpose-rmsd">${result.rmsd.toFixed(2)} Å</b> over ${result.corresponding} residues, GDT-TS ${result.gdt_ts.toFixed(3)}, `
      + `lDDT-Cα ${result.lddt_ca.toFixed(3)}.`;
    drawStructure(result.model_pdb, state.entry.plddt != null, result.reference_pdb);
    $("legend-reference").hidden = false;
    if (state.samples) { // the superposed model is the entry's own structure: the best sample
      state.samples.index = Math.max(0, state.samples.list.findIndex((s) => s.sample === state.samples.best));
      state.samples.loading++;
      state.shownSample = state.samples.best;
      updateStepper();
    }
  } catch (error) {
    $("superpose-result").textContent = "";
    showMessage(error.message);
  }
}

// ---- design (ProteinMPNN) ------------------------------------------------------------------------------

async function design(event) {
  event.preventDefault();
  if (!state.entry) return;
  const body = { entry_id: state.entry.id, num_sequences: Number($("design-count").value) || 4,
    temperature: Number($("design-temperature").value) || 0.1, omit: $("design-omit").value.trim().toUpperCase(),
    refold: $("design-refold").checked };
  $("design-status").textContent = "Designing...";
  $("design-table").hidden = true;
  try {
    let job = await api("/api/v1/design", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body) });
    while (job.status === "queued" || job.status === "running") {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      job = await api(job.links.job);
    }
    if (job.status === "failed") throw new Error(job.error);
    state.design = job;
    showDesigns(job);
  } catch (error) {
    $("design-status").textContent = "";
    showMessage(error.message);
  }
}

function showDesigns(job) {
  const result = job.result;
  const refolded = new Map(((result.refolded || {}).designs || []).map((r) => [r.index, r]));
  const rows = [{ index: 0, sequence: result.native, score: result.native_score, recovery: 1 },
    ...result.designs];
  const tbody = $("design-table").querySelector("tbody");
  tbody.innerHTML = "";
  for (const d of rows) {
    const r = refolded.get(d.index);
    const tr = document.createElement("tr");
    tr.dataset.index = d.index;
    const cells = [d.index === 0 ? "input" : d.index, d.score.toFixed(3), d.recovery.toFixed(3),
      r ? r.sc_tm.toFixed(3) : "-", r ? r.rmsd.toFixed(2) : "-", r ? r.plddt.toFixed(1) : "-"];
    for (const value of cells) {
      const td = document.createElement("td");
      td.textContent = value;
      tr.appendChild(td);
    }
    const seq = document.createElement("td");
    seq.className = "design-seq";
    seq.textContent = d.sequence;
    tr.appendChild(seq);
    const action = document.createElement("td");
    if (job.links.models[String(d.index)]) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Show";
      button.className = "design-show";
      button.addEventListener("click", () => showRefolded(job, d.index));
      action.appendChild(button);
    }
    tr.appendChild(action);
    tbody.appendChild(tr);
  }
  $("design-table").hidden = false;
  $("design-note").hidden = false;
  $("design-status").textContent = `${result.designs.length} designs, ${result.designed} positions designed` +
    (result.refolded ? `, refolded with ${result.refolded.model}` : "") + ".";
}

async function showRefolded(job, index) {
  const base = `/api/v1/entries/${encodeURIComponent(state.entry.id)}`;
  const [model, target] = await Promise.all([api(job.links.models[String(index)]), api(`${base}/structure.pdb`)]);
  drawStructure(model, true, target);
  $("legend-reference").hidden = false;
  state.shownDesign = index;
}

// ---- search --------------------------------------------------------------------------------------------

const SEQ_COLUMNS = [["target", "Entry"], ["chain", "Chain"], ["identity", "Identity"], ["evalue", "E-value"],
  ["bitscore", "Bits"], ["query_coverage", "Query cov."], ["target_coverage", "Target cov."]];
const STRUCT_COLUMNS = [["target", "Entry"], ["chain", "Chain"], ["tm_score", "TM (query)"],
  ["tm_score_target", "TM (target)"], ["rmsd", "RMSD"], ["aligned_length", "Aligned"], ["identity", "Identity"],
  ["method", "Scored by"]];

function fmt(key, value) {
  if (value == null) return "";
  if (key === "evalue") return Number(value).toExponential(1);
  if (typeof value === "number" && !Number.isInteger(value)) return value.toFixed(3);
  return String(value);
}

function showHits(result, columns) {
  const table = $("search-results");
  table.tHead.innerHTML = `<tr>${columns.map(([, label]) => `<th>${label}</th>`).join("")}</tr>`;
  const body = table.tBodies[0];
  body.innerHTML = "";
  for (const hit of result.hits) {
    const row = document.createElement("tr");
    for (const [key] of columns) {
      const cell = document.createElement("td");
      if (key === "target") {
        const link = document.createElement("a");
        link.href = `/entry/${encodeURIComponent(hit.target)}`;
        link.textContent = hit.target;
        link.dataset.entry = hit.target;
        cell.appendChild(link);
      } else {
        cell.textContent = fmt(key, hit[key]);
      }
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
  table.hidden = false;
  $("search-status").textContent = `${result.hits.length} hits for ${result.query} (${result.length} residues) in ${result.seconds} s.`;
  const onMap = $("search-on-map");
  const ids = [...new Set(result.hits.map((h) => h.target))].slice(0, 1000);
  onMap.hidden = ids.length === 0;
  onMap.href = `/map?highlight=${ids.map(encodeURIComponent).join(",")}`;
}

async function runSearchFromUrl(params) {
  $("search-results").hidden = true;
  const sequence = params.get("sequence");
  const entry = params.get("entry");
  if (sequence) {
    $("search-sequence").value = sequence;
    $("search-status").textContent = "Searching...";
    const result = await api("/api/v1/search/sequence", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sequence, max_hits: 100 }),
    });
    showHits(result, SEQ_COLUMNS);
  } else if (entry) {
    $("search-entry").value = entry;
    const form = new FormData();
    form.append("entry_id", entry);
    await structureSearch(form);
  } else {
    $("search-status").textContent = "";
  }
}

async function structureSearch(form) {
  $("search-status").textContent = "Searching...";
  const result = await api("/api/v1/search/structure", { method: "POST", body: form });
  showHits(result, STRUCT_COLUMNS);
}

// ---- map -----------------------------------------------------------------------------------------------
// Every entry as one point, drawn with WebGL (regl, vendored): one binary buffer from /api/v1/map/points.bin
// (positions, cluster, length, pLDDT), colours computed here, zoom and pan as two uniforms.

const MAP_PAD = 20;
const GREY = [154, 154, 154];
const hexRgb = (hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));

async function loadMap(highlight) {
  const started = performance.now();
  const header = await api("/api/v1/map/layout");
  const response = await fetch(header.points);
  if (!response.ok) throw new Error(`map points: HTTP ${response.status}`);
  const buffer = await response.arrayBuffer();
  const fetched = performance.now();
  const view = {};
  for (const f of header.fields) {
    const Type = { uint32: Uint32Array, uint16: Uint16Array, uint8: Uint8Array }[f.type];
    view[f.name] = new Type(buffer, f.offset, f.count);
  }
  const n = header.count;
  // the points in a fixed shuffled order, so that the first k drawn are an even sample of the map (see drawMap)
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let seed = 12345;
  for (let i = n - 1; i > 0; i--) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    const j = seed % (i + 1), t = order[i];
    order[i] = order[j]; order[j] = t;
  }
  const position = new Uint16Array(2 * n);
  for (let k = 0; k < n; k++) { position[2 * k] = view.x[order[k]]; position[2 * k + 1] = view.y[order[k]]; }
  const m = { header, view, n, order, position, scale: 1, dx: 0, dy: 0, mode: $("map-colour").value, highlight: [],
              drawCount: n,
              stats: { points: n, bytes: header.bytes, bytes_gzip: header.bytes_gzip, fetch_ms: fetched - started } };
  m.grid = buildGrid(view.x, view.y, n);
  state.map = m;
  if (n > 0) setupGl(m);
  $("map-status").textContent = n < 2 ? "The map needs at least two entries with embeddings."
    : `${n.toLocaleString()} of ${header.total_entries.toLocaleString()} entries` +
      (header.clustering ? `, clusters of ${header.clustering}` : "") +
      `; axes explain ${(100 * header.explained_variance[0]).toFixed(1)}% and ` +
      `${(100 * header.explained_variance[1]).toFixed(1)}% of the embeddings' variance.`;
  if (highlight && highlight.length) await highlightIds(highlight);
  drawMap();
  if (m.drawPoints) finishDrawing();
  m.stats.first_paint_ms = performance.now() - started;
  m.stats.since_navigation_ms = performance.now();
}

function buildGrid(x, y, n) { // points bucketed on a 256 x 256 grid: hover and click look at nine buckets
  const cell = (i) => (y[i] >> 8) * 256 + (x[i] >> 8);
  const counts = new Uint32Array(256 * 256 + 1);
  for (let i = 0; i < n; i++) counts[cell(i) + 1]++;
  for (let c = 1; c < counts.length; c++) counts[c] += counts[c - 1];
  const fill = counts.slice(0, 256 * 256), order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[fill[cell(i)]++] = i;
  return { start: counts, order };
}

function colours(m) {
  const v = m.view, out = new Uint8Array(3 * m.n);
  const band = BANDS.map(([lo, hex]) => [lo, hexRgb(hex)]);
  let maxLog = 1;
  if (m.mode === "length") for (let i = 0; i < m.n; i++) maxLog = Math.max(maxLog, Math.log(1 + v.length[i]));
  for (let i = 0; i < m.n; i++) {
    let c;
    if (m.mode === "cluster") {
      const h = Math.imul(v.cluster[i] ^ 0x9e3779b9, 2654435761) >>> 0;
      c = hslRgb((h % 360) / 360, 0.65, 0.3 + ((h >>> 9) % 40) / 100);
    } else if (m.mode === "length") {
      const t = Math.log(1 + v.length[i]) / maxLog;
      c = [Math.round(68 + 185 * t), Math.round(1 + 230 * t * (1 - 0.4 * t)), Math.round(84 + 80 * (1 - t))];
    } else {
      const p = v.plddt[i];
      c = p === m.header.no_plddt ? GREY : band.find(([lo]) => p > lo)[1];
    }
    out[3 * i] = c[0]; out[3 * i + 1] = c[1]; out[3 * i + 2] = c[2];
  }
  const shuffled = new Uint8Array(3 * m.n); // in the drawing order
  for (let k = 0; k < m.n; k++) {
    const i = 3 * m.order[k];
    shuffled[3 * k] = out[i]; shuffled[3 * k + 1] = out[i + 1]; shuffled[3 * k + 2] = out[i + 2];
  }
  return shuffled;
}

function hslRgb(h, s, l) {
  const f = (k) => { const a = s * Math.min(l, 1 - l), t = (k + h * 12) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(t - 3, 9 - t, 1)))); };
  return [f(0), f(8), f(4)];
}

function setupGl(m) {
  const canvas = $("map-canvas");
  if (!state.regl) state.regl = createREGL({ canvas, attributes: { antialias: false, preserveDrawingBuffer: true } });
  const regl = state.regl;
  m.positionBuffer = regl.buffer({ data: m.position, type: "uint16" });
  m.colourBuffer = regl.buffer({ data: colours(m), type: "uint8" });
  m.highlightBuffer = regl.buffer({ data: new Uint16Array(2), type: "uint16" });
  const shader = {
    vert: `precision highp float;
      attribute vec2 position; attribute vec3 colour;
      uniform vec2 size; uniform float scale, pointSize, pad; uniform vec2 offset;
      varying vec3 vColour;
      void main() {
        float side = min(size.x, size.y) - 2.0 * pad;
        vec2 px = vec2(pad + position.x * side, pad + (1.0 - position.y) * side) * scale + offset;
        gl_Position = vec4(px.x / size.x * 2.0 - 1.0, 1.0 - px.y / size.y * 2.0, 0.0, 1.0);
        gl_PointSize = pointSize; vColour = colour;
      }`,
    frag: `precision mediump float; varying vec3 vColour; uniform float ring;
      void main() {
        vec2 d = gl_PointCoord - 0.5; float r = dot(d, d);
        if (r > 0.25) discard;
        gl_FragColor = vec4(ring > 0.5 && r < 0.1 ? vec3(1.0) : vColour, 1.0);
      }`,
    uniforms: { size: (ctx) => [ctx.viewportWidth, ctx.viewportHeight], scale: () => m.scale,
                offset: () => [m.dx, m.dy], pad: MAP_PAD, pointSize: regl.prop("pointSize"), ring: regl.prop("ring") },
    primitive: "points",
  };
  m.drawPoints = regl({ ...shader,
    attributes: { position: { buffer: m.positionBuffer, normalized: true }, colour: { buffer: m.colourBuffer,
                  normalized: true } }, count: () => m.drawCount });
  m.drawHighlight = regl({ ...shader,
    attributes: { position: { buffer: () => m.highlightBuffer, normalized: true }, colour: [0.86, 0.08, 0.24] },
    count: () => m.highlight.length });
}

function pointSize(m) {
  const base = m.n < 200 ? 10 : m.n < 5000 ? 6 : m.n < 200000 ? 3 : 1.5;
  return Math.min(12, base * Math.max(1, Math.sqrt(m.scale)));
}

const MOVING_POINTS = 150000; // drawn while the map moves (an even sample); the whole map once it rests
let restTimer = null;

function drawMoving() { // a frame during zoom or pan: a sample, then everything 150 ms after the last move
  const m = state.map;
  if (!m) return;
  m.drawCount = Math.min(m.n, MOVING_POINTS);
  drawMap(m.drawCount);
  clearTimeout(restTimer);
  restTimer = setTimeout(() => drawMap(), 150);
}

function drawMap(count) {
  const m = state.map;
  if (!m || !m.drawPoints) return;
  m.drawCount = count || m.n;
  state.regl.poll();
  state.regl.clear({ color: [1, 1, 1, 1], depth: 1 });
  m.drawPoints({ pointSize: pointSize(m) * devicePixelRatio, ring: 0 });
  if (m.highlight.length) m.drawHighlight({ pointSize: Math.max(9, 2 * pointSize(m)) * devicePixelRatio, ring: 1 });
}

function finishDrawing() { // reading one pixel back waits until the GPU (or SwiftShader) has drawn the frame
  const gl = state.regl._gl, pixel = new Uint8Array(4);
  gl.readPixels(0, 0, 1, 1, gl.RGBA, gl.UNSIGNED_BYTE, pixel);
}

state.mapFrameMs = (frames = 20, count) => { // the time of one redraw (all points, or count), drawn to the end
  const started = performance.now();
  for (let k = 0; k < frames; k++) { state.map.dx += 0.01; drawMap(count); finishDrawing(); }
  return (performance.now() - started) / frames;
};

function pixelOfIndex(i) {
  const m = state.map, canvas = $("map-canvas"), side = Math.min(canvas.width, canvas.height) - 2 * MAP_PAD;
  return [(MAP_PAD + (m.view.x[i] / 65535) * side) * m.scale + m.dx,
          (MAP_PAD + (1 - m.view.y[i] / 65535) * side) * m.scale + m.dy];
}

async function locate(ids) {
  const result = await api("/api/v1/map/locate", { method: "POST", headers: { "Content-Type": "application/json" },
                                                   body: JSON.stringify({ ids }) });
  return result.indices;
}

state.mapPixelOf = async (id) => {
  const [index] = await locate([id]);
  return index >= 0 ? pixelOfIndex(index) : null;
};

async function highlightIds(ids) {
  const m = state.map;
  m.highlight = (await locate(ids)).filter((i) => i >= 0);
  const data = new Uint16Array(2 * Math.max(1, m.highlight.length));
  m.highlight.forEach((i, k) => { data[2 * k] = m.view.x[i]; data[2 * k + 1] = m.view.y[i]; });
  if (m.highlightBuffer) m.highlightBuffer({ data, type: "uint16" });
  $("map-highlight").textContent = m.highlight.length ? `${m.highlight.length} of ${ids.length} entries highlighted (red).` : "";
  drawMap();
}
state.mapHighlight = highlightIds;

function nearest(canvas, event) {
  const m = state.map, rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (canvas.width / rect.width);
  const y = (event.clientY - rect.top) * (canvas.height / rect.height);
  const side = Math.min(canvas.width, canvas.height) - 2 * MAP_PAD;
  const gx = ((x - m.dx) / m.scale - MAP_PAD) / side * 65535, gy = (1 - ((y - m.dy) / m.scale - MAP_PAD) / side) * 65535;
  const cx = Math.floor(gx / 256), cy = Math.floor(gy / 256);
  let best = -1, bestDistance = 64; // within 8 px
  for (let yy = Math.max(0, cy - 1); yy <= Math.min(255, cy + 1); yy++) {
    for (let xx = Math.max(0, cx - 1); xx <= Math.min(255, cx + 1); xx++) {
      const c = yy * 256 + xx;
      for (let k = m.grid.start[c]; k < m.grid.start[c + 1]; k++) {
        const i = m.grid.order[k], [px, py] = pixelOfIndex(i), d = (px - x) ** 2 + (py - y) ** 2;
        if (d < bestDistance) { best = i; bestDistance = d; }
      }
    }
  }
  return best;
}

function bindMap(canvas) {
  let drag = null, moved = false, hoverTimer = null;
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = canvas.getBoundingClientRect();
    const x = (event.clientX - rect.left) * (canvas.width / rect.width);
    const y = (event.clientY - rect.top) * (canvas.height / rect.height);
    const factor = event.deltaY < 0 ? 1.25 : 0.8, m = state.map;
    m.dx = x - (x - m.dx) * factor;
    m.dy = y - (y - m.dy) * factor;
    m.scale *= factor;
    drawMoving();
  }, { passive: false });
  canvas.addEventListener("mousedown", (event) => { drag = [event.clientX, event.clientY]; moved = false; });
  window.addEventListener("mouseup", () => { drag = null; });
  canvas.addEventListener("mousemove", (event) => {
    if (!state.map) return;
    if (drag) {
      const rect = canvas.getBoundingClientRect(), k = canvas.width / rect.width;
      const dx = event.clientX - drag[0], dy = event.clientY - drag[1];
      if (Math.abs(dx) + Math.abs(dy) > 2) moved = true;
      state.map.dx += dx * k; state.map.dy += dy * k;
      drag = [event.clientX, event.clientY];
      drawMoving();
      return;
    }
    const i = nearest(canvas, event);
    clearTimeout(hoverTimer);
    if (i < 0) { $("map-hover").textContent = ""; return; }
    hoverTimer = setTimeout(async () => {
      const p = await api(`/api/v1/map/points/${i}`);
      $("map-hover").textContent = `${p.id}: ${p.length} residues, mean pLDDT ${p.mean_plddt ?? "-"}` +
        (p.cluster_rep && p.cluster_rep !== p.id ? `; cluster of ${p.cluster_rep}` : "");
    }, 80);
  });
  canvas.addEventListener("click", async (event) => {
    if (moved || !state.map) return;
    const i = nearest(canvas, event);
    if (i >= 0) navigate(`/entry/${encodeURIComponent((await api(`/api/v1/map/points/${i}`)).id)}`);
  });
  $("map-colour").addEventListener("change", () => {
    const m = state.map;
    if (!m || !m.colourBuffer) return;
    m.mode = $("map-colour").value;
    m.colourBuffer({ data: colours(m), type: "uint8" });
    drawMap();
  });
}

async function showMap(params) {
  const highlight = (params && params.get("highlight") || "").split(",").filter(Boolean);
  if (!state.map) {
    $("map-status").textContent = "Loading...";
    if (!state.mapBound) { bindMap($("map-canvas")); state.mapBound = true; }
    await loadMap(highlight);
  } else {
    if (highlight.length) await highlightIds(highlight);
    drawMap();
  }
}

// ---- wiring --------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("fold-button").addEventListener("click", fold);
  $("fasta-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) $("sequence").value = await file.text();
  });
  $("superpose-form").addEventListener("submit", superpose);
  $("design-form").addEventListener("submit", design);
  $("sample-prev").addEventListener("click", () => stepSample(-1));
  $("sample-next").addEventListener("click", () => stepSample(1));
  $("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const id = $("lookup-id").value.trim();
    if (id) navigate(`/entry/${encodeURIComponent(id)}`);
  });
  $("seqsearch-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const sequence = $("search-sequence").value.trim().replace(/^>.*\n/, "").replace(/\s+/g, "");
    if (sequence) navigate(`/search?sequence=${encodeURIComponent(sequence)}`);
  });
  $("structsearch-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const file = $("search-structure-file").files[0];
    const entry = $("search-entry").value.trim();
    if (file) {
      const form = new FormData();
      form.append("file", file);
      try { await structureSearch(form); } catch (error) { showMessage(error.message); }
    } else if (entry) {
      navigate(`/search?entry=${encodeURIComponent(entry)}`);
    }
  });
  document.body.addEventListener("click", (event) => {
    const link = event.target.closest("a");
    if (link && link.origin === location.origin && !link.href.includes("/api/") && !event.ctrlKey && !event.metaKey) {
      event.preventDefault();
      navigate(link.pathname + link.search);
    }
  });
  window.addEventListener("popstate", route);
  api("/api/v1/info").then((info) => {
    $("server-info").textContent = `${info.model} · ${info.atlas_entries} entries · up to ${info.max_length} residues`;
  }).catch(() => {});
  route();
});
