// The VAE service's web console: plain ES module, no build step, no requests to other hosts.
// Every call goes to this service's VAE API (docs/api.md); errors are shown in the page (#errors, aria-live).

const $ = (id) => document.getElementById(id);
const SLIDER_DIMS = 8;
const MAX_IMAGES = 8;
const DEBOUNCE_MS = 150;
const KEY_STORE = "vae-console-api-key";

const state = { models: [], model: null, files: [], mean: null, decodeSeq: 0, sampleSeq: 0, imageSeq: 0 };

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function showError(error) {
  const line = document.createElement("p");
  line.textContent = error.message || String(error);
  $("errors").replaceChildren(line);
}

function clearErrors() { $("errors").replaceChildren(); }

function status(text) { $("status").textContent = text; }

function headers(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : extra;
}

// One call to the API; a non-2xx answer becomes an Error with the service's message and field.
async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.headers) });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      const error = body.error || {};
      message = `${path.split("?")[0]}: ${response.status} ${error.message || ""}${error.field ? ` (${error.field})` : ""}`;
    } catch (_) { /* not JSON: keep the status line */ }
    throw new Error(message);
  }
  return response.json();
}

const query = (params) => new URLSearchParams({ model: state.model, ...params }).toString();
const png = (b64) => `data:image/png;base64,${b64}`;

function pixelImage(src, alt, className = "pixel") {
  const img = document.createElement("img");
  img.className = className;
  img.src = src;
  img.alt = alt;
  return img;
}

function figure(img, caption, className = "") {
  const fig = document.createElement("figure");
  if (className) fig.className = className;
  const cap = document.createElement("figcaption");
  cap.textContent = caption;
  fig.append(img, cap);
  return fig;
}

function fmt(x, digits = 2) { return x === null || x === undefined ? "n/a" : Number(x).toFixed(digits); }

// Model: list, card.

async function loadModels() {
  clearErrors();
  try {
    const body = await api("/models");
    state.models = body.models;
    const select = $("model");
    select.replaceChildren(...body.models.map((m) => new Option(m.name, m.name, m.default, m.default)));
    state.model = select.value;
    renderCard();
    status(`${body.models.length} model(s) loaded`);
    drawSamples();
    processImages();
  } catch (error) { showError(error); }
}

function currentModel() { return state.models.find((m) => m.name === state.model); }

function renderCard() {
  const m = currentModel();
  const card = $("card");
  if (!m) { card.replaceChildren(); return; }
  const man = m.manifest;
  const metrics = man.metrics || {};
  const rows = [
    ["description", man.description || ""],
    ["image", `${man.image.channels} x ${man.image.height} x ${man.image.width}, ${man.image.pixel_mode}`],
    ["latent size", String(man.latent_dim)],
    ["likelihood", man.likelihood.type + (man.likelihood.sigma ? `, sigma ${fmt(man.likelihood.sigma, 4)}` : "")],
    ["test ELBO", metrics.elbo === undefined ? "n/a" : `${fmt(metrics.elbo)} nats`],
    ["test log-likelihood", metrics.log_likelihood === undefined ? "n/a" : `${fmt(metrics.log_likelihood)} nats`],
    ["bits/dim", fmt(metrics.bits_per_dim, 3)],
    ["providers", (m.providers || []).join(", ")],
  ];
  card.replaceChildren(...rows.flatMap(([k, v]) => {
    const dt = document.createElement("dt"); dt.textContent = k;
    const dd = document.createElement("dd"); dd.textContent = v;
    return [dt, dd];
  }));
}

// Images: reconstruction, latent mean, log-likelihood.

function form(files) {
  const data = new FormData();
  for (const file of files) data.append("images", file, file.name);
  return data;
}

function barChart(values, label) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 180, height = 84, mid = height / 2;
  const scale = Math.max(3, ...values.map(Math.abs));
  const bar = width / values.length;
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "bars");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", label);
  const axis = document.createElementNS(ns, "line");
  Object.entries({ x1: 0, x2: width, y1: mid, y2: mid, stroke: "#9aa3b5" }).forEach(([k, v]) => axis.setAttribute(k, v));
  svg.append(axis);
  values.forEach((v, i) => {
    const h = (Math.abs(v) / scale) * (mid - 2);
    const rect = document.createElementNS(ns, "rect");
    Object.entries({ x: i * bar + 0.5, y: v >= 0 ? mid - h : mid, width: Math.max(1, bar - 1), height: h,
      fill: v >= 0 ? "#2f5bd3" : "#d36b2f" }).forEach(([k, val]) => rect.setAttribute(k, val));
    const title = document.createElementNS(ns, "title");
    title.textContent = `z${i + 1} = ${v.toFixed(3)}`;
    rect.append(title);
    svg.append(rect);
  });
  return svg;
}

function handleFiles(fileList) {
  const files = [...fileList].filter((f) => /^image\/(png|jpeg)$/.test(f.type) || /\.(png|jpe?g)$/i.test(f.name));
  if (!files.length) { showError(new Error("choose PNG or JPEG images")); return; }
  state.files = files.slice(0, MAX_IMAGES);
  if (files.length > MAX_IMAGES) showError(new Error(`only the first ${MAX_IMAGES} images are used`));
  else clearErrors();
  processImages();
}

async function processImages() {
  const files = state.files;
  if (!files.length || !state.model) return;
  const seq = ++state.imageSeq;
  status(`scoring ${files.length} image(s)...`);
  const k = $("k").value || "500";
  try {
    const [recon, enc, loglik] = await Promise.all([
      api(`/reconstruct?${query({})}`, { method: "POST", body: form(files) }),
      api(`/encode?${query({})}`, { method: "POST", body: form(files) }),
      api(`/loglik?${query({ k, seed: "0" })}`, { method: "POST", body: form(files) }),
    ]);
    if (seq !== state.imageSeq) return;
    const rows = files.map((file, i) => {
      const row = document.createElement("div");
      row.className = "result";
      const mean = enc.results[i].mean;
      const ll = loglik.results[i];
      const scores = document.createElement("div");
      scores.className = "scores";
      const lines = [
        ["loglik", `log-likelihood ${fmt(ll.log_likelihood)} nats (± ${fmt(ll.log_likelihood_stderr, 3)})`],
        ["elbo", `ELBO ${fmt(ll.elbo)} nats`],
        ["bpd", `bits/dim ${fmt(ll.bits_per_dim, 3)}`],
        ["ess", `ESS ${fmt(ll.effective_sample_size, 1)} of k = ${ll.k}`],
      ];
      for (const [cls, text] of lines) {
        const p = document.createElement("div"); p.className = cls; p.textContent = text; scores.append(p);
      }
      if (ll.warning) {
        const w = document.createElement("div"); w.className = "warn"; w.textContent = ll.warning; scores.append(w);
      }
      row.append(
        figure(pixelImage(URL.createObjectURL(file), `input ${i + 1}: ${file.name}`, "pixel input"), file.name),
        figure(pixelImage(png(recon.images[i]), `reconstruction of ${file.name}`, "pixel recon"), "reconstruction"),
        figure(barChart(mean, `latent mean of ${file.name}, ${mean.length} dimensions`), "latent mean", "chart"),
        scores,
      );
      return row;
    });
    $("results").replaceChildren(...rows);
    setupSliders(enc.results[0].mean);
    status(`scored ${files.length} image(s) with ${state.model}`);
    interpolate();
  } catch (error) { if (seq === state.imageSeq) { showError(error); status(""); } }
}

// Latent sliders: the first dimensions of the first image's mean; one /decode per change, debounced.

const decodeSoon = debounce(decode, DEBOUNCE_MS);

function setupSliders(mean) {
  state.mean = mean.slice();
  const dims = Math.min(SLIDER_DIMS, mean.length);
  const items = [];
  for (let i = 0; i < dims; i++) {
    const id = `z-${i}`;
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = `z${i + 1}`;
    const input = document.createElement("input");
    input.type = "range";
    input.id = id;
    input.className = "latent";
    const lo = Math.min(-3, Math.floor(mean[i])), hi = Math.max(3, Math.ceil(mean[i]));
    Object.assign(input, { min: lo, max: hi, step: 0.05, value: mean[i] });
    const out = document.createElement("output");
    out.htmlFor = id;
    out.textContent = Number(mean[i]).toFixed(2);
    input.addEventListener("input", () => {
      state.mean[i] = Number(input.value);
      out.textContent = Number(input.value).toFixed(2);
      decodeSoon();
    });
    items.push(label, input, out);
  }
  $("sliders").replaceChildren(...items);
  decode();
}

async function decode() {
  if (!state.mean) return;
  const seq = ++state.decodeSeq;
  try {
    const body = await api(`/decode?${query({})}`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ z: [state.mean] }),
    });
    if (seq === state.decodeSeq) $("decoded").src = png(body.images[0]);
  } catch (error) { showError(error); }
}

// Interpolation between the first two images.

async function interpolate() {
  if (state.files.length < 2) { $("strip").replaceChildren(); return; }
  const params = { steps: $("steps").value || "10", method: $("method").value };
  try {
    const body = await api(`/interpolate?${query(params)}`, { method: "POST", body: form(state.files.slice(0, 2)) });
    $("strip").replaceChildren(...body.images.map((b64, i) =>
      pixelImage(png(b64), `interpolation step ${i + 1} of ${body.images.length}`)));
  } catch (error) { showError(error); }
}

// Samples.

async function drawSamples() {
  if (!state.model) return;
  const seq = ++state.sampleSeq;
  const params = { n: $("count").value || "16", seed: $("seed").value || "0",
    temperature: $("temperature").value, noise: $("noise").checked ? "true" : "false" };
  try {
    const body = await api(`/sample?${query(params)}`);
    if (seq !== state.sampleSeq) return;
    $("samples").replaceChildren(...body.images.map((b64, i) => pixelImage(png(b64), `sample ${i + 1}`)));
    $("samples").dataset.seed = String(body.seed);
  } catch (error) { if (seq === state.sampleSeq) showError(error); }
}

const drawSoon = debounce(drawSamples, DEBOUNCE_MS);

// Wiring.

function init() {
  const key = $("api-key");
  key.value = sessionStorage.getItem(KEY_STORE) || "";
  key.addEventListener("change", () => { sessionStorage.setItem(KEY_STORE, key.value.trim()); loadModels(); });
  $("reload-models").addEventListener("click", loadModels);
  $("model").addEventListener("change", (e) => {
    state.model = e.target.value;
    clearErrors();
    renderCard();
    drawSamples();
    processImages();
  });
  $("files").addEventListener("change", (e) => handleFiles(e.target.files));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); handleFiles(e.dataTransfer.files); });
  $("k").addEventListener("change", processImages);
  for (const id of ["seed", "noise", "count"]) $(id).addEventListener("change", drawSoon);
  $("temperature").addEventListener("input", () => {
    $("temperature-value").textContent = Number($("temperature").value).toFixed(1);
    drawSoon();
  });
  $("steps").addEventListener("change", interpolate);
  $("method").addEventListener("change", interpolate);
  loadModels();
}

init();
