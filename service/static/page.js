"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const TARGET_RATE = 16000;        // what the models use; recordings are resampled to it in the browser
  const MAX_RECORD_S = 60;

  // Colours of the usual labels; any other label the server sends gets a colour from its name.
  const COLORS = { angry: "#e5484d", disgust: "#5f9a2f", fear: "#8e4ec6", happy: "#e79d13", sad: "#3e63dd", neutral: "#7d818c" };
  function colorOf(label) {
    if (COLORS[label]) return COLORS[label];
    let h = 0;
    for (const ch of String(label)) h = (h * 31 + ch.codePointAt(0)) % 360;
    return `hsl(${h} 55% 48%)`;
  }
  const pct = (p, digits = 1) => `${(100 * p).toFixed(digits)}%`;
  const NO_SPEECH = "no speech";
  const NO_SPEECH_COLOR = "#8b8d98";
  const secs = (s) => `${Number(s).toFixed(s < 10 ? 2 : 1)} s`;
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "style") Object.assign(e.style, v);
      else if (k === "dataset") Object.assign(e.dataset, v);
      else if (k === "text") e.textContent = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }

  // ---------- state ----------
  let clip = null;          // {blob, name, converted}
  let clipUrl = null;
  let inflight = null;      // AbortController of the running request

  const form = $("predict-form"), fileInput = $("file-input"), drop = $("drop-zone");
  const analyzeBtn = $("analyze-button"), recordBtn = $("record-button"), apiKey = $("api-key");

  try { apiKey.value = sessionStorage.getItem("ser-api-key") || ""; } catch (_) { /* storage blocked */ }
  apiKey.addEventListener("change", () => { try { sessionStorage.setItem("ser-api-key", apiKey.value); } catch (_) {} });

  function setClip(blob, name, info) {
    clip = { blob, name, converted: false };
    if (clipUrl) URL.revokeObjectURL(clipUrl);
    clipUrl = URL.createObjectURL(blob);
    $("clip-audio").src = clipUrl;
    $("clip-name").textContent = name;
    $("clip-info").textContent = info || `${(blob.size / 1024).toFixed(blob.size < 10240 ? 1 : 0)} KB`;
    $("clip").hidden = false;
    analyzeBtn.disabled = false;
  }

  // ---------- view ----------
  function show(which) {           // "placeholder" | "busy" | "result" | "error"
    $("placeholder").hidden = which !== "placeholder";
    $("busy").hidden = which !== "busy";
    $("result").hidden = which !== "result";
    $("error").hidden = which !== "error";
    $("result-card").setAttribute("aria-busy", which === "busy" ? "true" : "false");
  }

  // on narrow screens the result is below the form: bring it into view
  function revealResult() {
    const card = $("result-card"), top = card.getBoundingClientRect().top;
    if (top > window.innerHeight * 0.6 || top < 0) {
      const smooth = !window.matchMedia("(prefers-reduced-motion: reduce)").matches;
      card.scrollIntoView({ block: "start", behavior: smooth ? "smooth" : "auto" });
    }
  }

  function showError(code, message, status) {
    $("error-title").textContent = status ? `Error ${status}` : "Could not analyze the audio";
    $("error-code").textContent = code;
    $("error-code").hidden = !code;
    $("error-message").textContent = code === "unauthorized" ? `${message}. Enter the key in the API key field.` : message;
    show("error");
    revealResult();
    $("status").textContent = `Error: ${code ? code + ": " : ""}${message}`;
  }

  function render(r) {
    // no speech heard: say so plainly, with no emotion and no probabilities
    const color = r.no_speech ? NO_SPEECH_COLOR : colorOf(r.label);
    $("result-label").textContent = r.no_speech ? "No speech" : r.label;
    $("result-label").dataset.label = r.label || "";
    $("result-label").dataset.noSpeech = String(!!r.no_speech);
    $("result-label").style.color = color;
    $("result-ring").style.stroke = color;
    $("result-ring").setAttribute("stroke-dasharray", `${(100 * (r.no_speech ? 0 : r.confidence)).toFixed(2)} 100`);
    $("result-confidence").textContent = r.no_speech ? pct(r.speech_share || 0, 0) : pct(r.confidence);
    $("result-confidence-word").textContent = r.no_speech ? "of the audio sounds like speech: no emotion to tell" : "confidence";

    const m = r.model || {};
    const modelUsed = $("model-used");
    modelUsed.replaceChildren(el("span", { class: "k", text: "Model" }),
      el("strong", { text: m.name }), document.createTextNode(` ${m.version} · ${m.role}${m.precision ? " · " + m.precision : ""}`));
    modelUsed.dataset.name = m.name; modelUsed.dataset.role = m.role; modelUsed.dataset.version = m.version;
    const fb = $("fell-back");
    fb.dataset.fellBack = String(!!r.fell_back);
    fb.className = r.fell_back ? "pill warn" : "pill ok";
    fb.textContent = r.fell_back ? "Fell back to the teacher: the student was unsure" : "No fallback";
    $("inference-time").replaceChildren(el("span", { class: "k", text: "Inference" }),
      document.createTextNode(`${Number(r.inference_ms).toFixed(1)} ms for ${secs(r.duration_s)} of audio`));
    $("inference-time").dataset.ms = r.inference_ms;

    // probability of every label the server sent, most likely first
    const probs = Object.entries(r.probabilities || {}).sort((a, b) => b[1] - a[1]);
    $("probabilities").replaceChildren(...probs.map(([label, p]) => {
      const bar = el("div", { class: "prob-bar", role: "presentation", "data-label": label, "data-probability": String(p),
                              "data-testid": `prob-bar-${label}`, style: { width: `${(100 * p).toFixed(3)}%`, background: colorOf(label) } });
      return el("li", { class: label === r.label ? "prob-row top" : "prob-row", "data-label": label },
        el("span", { class: "prob-name", text: label, title: label }),
        el("div", { class: "prob-track", "aria-hidden": "true" }, bar),
        el("span", { class: "prob-value", text: pct(p) }));
    }));

    renderTimeline(r);
    show("result");
    revealResult();
    $("status").textContent = r.no_speech ? "Result: no speech heard in the audio." :
      `Result: ${r.label}, ${pct(r.confidence, 0)} confidence, from ${m.name} (${m.role})` +
      (r.fell_back ? ", after falling back to the teacher." : ".");
  }

  function renderTimeline(r) {
    const segs = r.segments || [];
    const section = $("timeline-section");
    if (segs.length < 2) { section.hidden = true; $("timeline").replaceChildren(); return; }
    const total = Math.max(r.duration_s || 0, ...segs.map((s) => s.end_s)) || 1;
    const spans = segs.map((s, i) => {
      // windows overlap: each block runs from its start to the next window's start (the last one to its end)
      const end = i + 1 < segs.length ? Math.min(s.end_s, segs[i + 1].start_s) : s.end_s;
      return { s, from: s.start_s, to: Math.max(s.start_s, end) };
    });
    const at = (t) => `${(100 * t / total).toFixed(4)}%`;
    const name = (s) => (s.no_speech ? NO_SPEECH : s.label);
    const blocks = spans.map(({ s, from, to }) => {
      const tip = `${secs(s.start_s)} – ${secs(s.end_s)}: ${s.no_speech ? NO_SPEECH : `${s.label} (${pct(s.confidence, 0)})`}`;
      return el("div", { class: "segment", role: "listitem", title: tip, "aria-label": tip,
                         "data-label": s.label || "", "data-no-speech": String(!!s.no_speech),
                         "data-start": String(s.start_s), "data-end": String(s.end_s),
                         style: { left: at(from), width: at(to - from), background: s.no_speech ? NO_SPEECH_COLOR : colorOf(s.label),
                                  opacity: String(s.no_speech ? 0.5 : 0.4 + 0.6 * Math.min(1, Math.max(0, s.confidence))) } });
    });
    // consecutive windows with the same label form one run: one name, a separator between runs
    const runs = [];
    for (const sp of spans) {
      const last = runs[runs.length - 1];
      if (last && last.label === name(sp.s) && sp.from <= last.to + 1e-3) last.to = sp.to;
      else runs.push({ label: name(sp.s), from: sp.from, to: sp.to });
    }
    const runEls = runs.map((r) => el("div", { class: "run", "aria-hidden": "true", style: { left: at(r.from), width: at(r.to - r.from) } },
                                       el("span", { text: r.label })));
    $("timeline").replaceChildren(...blocks, ...runEls);
    // hide names that do not fit their run
    requestAnimationFrame(() => runEls.forEach((b) => {
      const span = b.firstChild; span.style.visibility = span.scrollWidth > b.clientWidth - 6 ? "hidden" : "visible";
    }));
    $("axis-mid").textContent = secs(total / 2);
    $("axis-end").textContent = secs(total);
    const seen = [...new Set(segs.map(name))];
    const legend = seen.map((l) => el("span", {}, el("i", { style: { background: l === NO_SPEECH ? NO_SPEECH_COLOR : colorOf(l) } }), l));
    const gaps = segs[0].start_s > 0.05 || segs[segs.length - 1].end_s < total - 0.05 ||
                 segs.some((s, i) => i > 0 && s.start_s > segs[i - 1].end_s + 0.01);
    if (gaps) legend.push(el("span", {}, el("i", { class: "gap" }), "silence, not analyzed"));
    $("timeline-legend").replaceChildren(...legend);
    $("segments-table").replaceChildren(...segs.map((s) => el("tr", {},
      el("td", { text: secs(s.start_s) }), el("td", { text: secs(s.end_s) }),
      el("td", { class: "cap", text: name(s) }), el("td", { text: s.no_speech ? "" : pct(s.confidence) }))));
    section.hidden = false;
  }

  // ---------- request ----------
  async function predict(blob, name) {
    const model = (form.querySelector("input[name=model]:checked") || {}).value || "auto";
    const url = new URL("predict", document.baseURI);
    url.search = new URLSearchParams({ model, segments: "true", top_k: "6" }).toString();
    const body = new FormData();
    body.append("file", blob, name);
    const headers = {};
    if (apiKey.value.trim()) headers["X-API-Key"] = apiKey.value.trim();
    if (inflight) inflight.abort();
    const ctrl = (inflight = new AbortController());
    const resp = await fetch(url, { method: "POST", body, headers, signal: ctrl.signal });
    let data = null;
    try { data = await resp.json(); } catch (_) { /* not JSON */ }
    if (inflight === ctrl) inflight = null;
    return { resp, data };
  }

  async function analyze() {
    if (!clip) return;
    show("busy");
    $("status").textContent = "Analyzing…";
    analyzeBtn.disabled = true;
    try {
      let { resp, data } = await predict(clip.blob, clip.name);
      // The server reads WAV/FLAC/OGG/MP3. For other formats the browser can decode (m4a, webm, ...),
      // convert to WAV here and try once more.
      if (!resp.ok && data && data.error && data.error.code === "unsupported_audio" && !clip.converted) {
        const wav = await toWav(clip.blob).catch(() => null);
        if (wav) {
          clip = { blob: wav, name: clip.name.replace(/\.[^.]*$/, "") + ".wav", converted: true };
          $("clip-info").textContent = "converted to WAV in your browser";
          ({ resp, data } = await predict(clip.blob, clip.name));
        }
      }
      if (resp.ok && data) render(data);
      else if (data && data.error) showError(data.error.code, data.error.message, resp.status);
      else showError("http_error", `the server answered ${resp.status} ${resp.statusText} without a JSON body`, resp.status);
    } catch (e) {
      if (e && e.name === "AbortError") return;
      showError("network_error", `could not reach the server (${e && e.message ? e.message : e})`);
    } finally {
      analyzeBtn.disabled = !clip;
    }
  }

  form.addEventListener("submit", (ev) => { ev.preventDefault(); analyze(); });
  form.querySelectorAll("input[name=model]").forEach((r) => r.addEventListener("change", () => { if (clip) analyze(); }));

  function useFile(file) {
    if (!file) return;
    setClip(file, file.name || "audio");
    analyze();
  }
  fileInput.addEventListener("change", () => useFile(fileInput.files && fileInput.files[0]));

  // drag and drop onto the drop zone (and anywhere on the page, so a missed drop doesn't navigate away)
  let depth = 0;
  ["dragenter", "dragover"].forEach((t) => document.addEventListener(t, (ev) => {
    if (!ev.dataTransfer || ![...ev.dataTransfer.types].includes("Files")) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = "copy";
    if (t === "dragenter") depth++;
    drop.classList.add("dragging");
  }));
  document.addEventListener("dragleave", () => { if (--depth <= 0) { depth = 0; drop.classList.remove("dragging"); } });
  document.addEventListener("drop", (ev) => {
    if (!ev.dataTransfer || !ev.dataTransfer.files.length) return;
    ev.preventDefault();
    depth = 0; drop.classList.remove("dragging");
    useFile(ev.dataTransfer.files[0]);
  });

  // ---------- audio -> 16-bit PCM WAV, in the browser ----------
  async function toWav(blob) {
    const Ctx = window.OfflineAudioContext || window.webkitOfflineAudioContext;
    // decodeAudioData resamples to the context's rate
    const ctx = new Ctx(1, 1, TARGET_RATE);
    const data = await blob.arrayBuffer();
    const buf = await new Promise((ok, fail) => {       // callback form too, for older Safari
      const p = ctx.decodeAudioData(data, ok, fail);
      if (p && p.catch) p.catch(fail);
    });
    return encodeWav(downmix(buf), buf.sampleRate);
  }

  function downmix(buf) {
    const n = buf.length, out = new Float32Array(n);
    for (let c = 0; c < buf.numberOfChannels; c++) {
      const ch = buf.getChannelData(c);
      for (let i = 0; i < n; i++) out[i] += ch[i] / buf.numberOfChannels;
    }
    return out;
  }

  function encodeWav(samples, rate) {
    const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
    const str = (o, s) => { for (let i = 0; i < s.length; i++) view.setUint8(o + i, s.charCodeAt(i)); };
    str(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); str(8, "WAVE");
    str(12, "fmt "); view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
    view.setUint32(24, rate, true); view.setUint32(28, rate * 2, true); view.setUint16(32, 2, true); view.setUint16(34, 16, true);
    str(36, "data"); view.setUint32(40, samples.length * 2, true);
    for (let i = 0, o = 44; i < samples.length; i++, o += 2) {
      const s = Math.max(-1, Math.min(1, samples[i]));
      view.setInt16(o, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    }
    return new Blob([view.buffer], { type: "audio/wav" });
  }
  window.SER = { encodeWav, toWav, colorOf };    // for static/live.js, tests and the curious

  // ---------- microphone ----------
  let recorder = null, chunks = [], timer = null, started = 0;
  const canRecord = !!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.MediaRecorder);
  if (!canRecord) {
    recordBtn.disabled = true;
    $("record-hint").textContent = window.isSecureContext
      ? "This browser cannot record audio."
      : "Recording needs a secure page (https or localhost).";
  }

  function setRecordingUi(on) {
    recordBtn.classList.toggle("recording", on);
    recordBtn.setAttribute("aria-pressed", String(on));
    $("record-text").textContent = on ? "Stop recording (0 s)" : "Record from microphone";
  }

  async function startRecording() {
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    } catch (e) {
      showError("microphone_error", `could not open the microphone (${e && e.name ? e.name : e})`);
      return;
    }
    const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm", "audio/mp4"]
      .find((t) => MediaRecorder.isTypeSupported && MediaRecorder.isTypeSupported(t));
    recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
    chunks = [];
    recorder.ondataavailable = (ev) => { if (ev.data && ev.data.size) chunks.push(ev.data); };
    recorder.onstop = async () => {
      stream.getTracks().forEach((t) => t.stop());
      clearInterval(timer);
      setRecordingUi(false);
      const seconds = (performance.now() - started) / 1000;
      const raw = new Blob(chunks, { type: recorder.mimeType || type || "audio/webm" });
      recorder = null;
      try {
        const wav = await toWav(raw);
        setClip(wav, "recording.wav", `${seconds.toFixed(1)} s recorded, 16-bit WAV`);
        clip.converted = true;
        analyze();
      } catch (e) {
        showError("recording_error", `could not decode the recording in this browser (${e && e.message ? e.message : e})`);
      }
    };
    recorder.start(250);
    started = performance.now();
    setRecordingUi(true);
    $("status").textContent = "Recording…";
    timer = setInterval(() => {
      const s = (performance.now() - started) / 1000;
      $("record-text").textContent = `Stop recording (${Math.floor(s)} s)`;
      if (s >= MAX_RECORD_S && recorder && recorder.state === "recording") recorder.stop();
    }, 250);
  }

  recordBtn.addEventListener("click", () => {
    if (recorder && recorder.state === "recording") recorder.stop();
    else startRecording();
  });

  // ---------- which models are loaded ----------
  fetch(new URL("v1/models", document.baseURI)).then((r) => (r.ok ? r.json() : null)).then((models) => {
    if (!Array.isArray(models)) return;
    const roles = new Set(models.map((m) => m.role));
    if (!roles.has("teacher")) {
      $("model-teacher").disabled = true;
      $("model-hint").textContent = "Auto: the student answers (no teacher is loaded on this server).";
    }
  }).catch(() => {});
})();
