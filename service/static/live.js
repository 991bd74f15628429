// Live mode: microphone -> AudioWorklet (static/pcm-worklet.js) -> 16-bit PCM over the /stream
// WebSocket -> the current label and a scrolling timeline with one row per label.
// A file, not an inline script, so that a Content-Security-Policy without 'unsafe-inline' allows it.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const RATE = 16000;          // what the models take; the browser resamples the microphone to it
  const FRAME_S = 0.1;         // audio per WebSocket frame
  const HOP_S = 0.5;           // an event every half second
  const COLUMNS = 60;          // timeline length: 30 s at HOP_S
  const colorOf = (label) => (window.SER && window.SER.colorOf ? window.SER.colorOf(label) : "#3e63dd");
  const pct = (p) => `${(100 * p).toFixed(0)}%`;

  const button = $("live-button"), timeline = $("live-timeline");
  let live = null;             // {ws, ctx, mic, node}
  let rows = {};               // label -> its track element
  let events = 0, lastLabel = null;

  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia && window.AudioWorkletNode && window.WebSocket)) {
    button.disabled = true;
    $("live-hint").textContent = window.isSecureContext
      ? "This browser cannot stream audio (no AudioWorklet)." : "Live mode needs a secure page (https or localhost).";
  }

  function setUi(on) {
    button.classList.toggle("recording", on);
    button.setAttribute("aria-pressed", String(on));
    $("live-text").textContent = on ? "Stop" : "Start live analysis";
  }

  function showError(code, message) {
    $("live-error-code").textContent = code;
    $("live-error-message").textContent = code === "unauthorized" ? `${message}. Enter the key in the API key field.` : message;
    $("live-error").hidden = false;
    $("live-status").textContent = `Live error: ${code}: ${message}`;
  }

  function resetTimeline(labels) {
    rows = {};
    timeline.replaceChildren(...labels.map((label) => {
      const track = document.createElement("div");
      track.className = "live-track";
      rows[label] = track;
      const name = document.createElement("span");
      name.className = "live-name";
      name.textContent = label;
      const row = document.createElement("div");
      row.className = "live-row";
      row.dataset.label = label;
      row.append(name, track);
      return row;
    }));
  }

  function onWindow(e) {
    const labels = Object.keys(e.probabilities);
    if (labels.some((l) => !rows[l])) resetTimeline(labels);
    for (const label of labels) {
      const cell = document.createElement("i");
      const p = e.probabilities[label];
      cell.dataset.probability = String(p);
      cell.style.background = colorOf(label);
      cell.style.opacity = String(0.08 + 0.92 * p);
      if (label === e.label) cell.className = "top";
      cell.title = `${e.start_s.toFixed(1)}–${e.end_s.toFixed(1)} s: ${label} ${pct(p)}`;
      rows[label].append(cell);
      while (rows[label].childElementCount > COLUMNS) rows[label].firstElementChild.remove();
    }
    if (e.no_speech) {   // an empty column: the timeline keeps time, and no emotion is drawn
      for (const label of Object.keys(rows)) {
        rows[label].append(document.createElement("i"));
        while (rows[label].childElementCount > COLUMNS) rows[label].firstElementChild.remove();
      }
    }
    events += 1;
    timeline.dataset.events = String(events);
    const now = $("live-label");
    now.textContent = e.no_speech ? "No speech" : e.label;
    now.dataset.label = e.label || "";
    now.dataset.noSpeech = String(!!e.no_speech);
    now.style.color = e.no_speech ? "#8b8d98" : colorOf(e.label);
    $("live-confidence").textContent = e.no_speech ? "no emotion to tell" : `${pct(e.confidence)} confidence`;
    $("live-meta").textContent = `${e.start_s.toFixed(1)}–${e.end_s.toFixed(1)} s · ${e.model.role}` +
      `${e.fell_back ? " (fallback)" : ""} · lag ${Math.round(e.lag_ms)} ms`;
    $("live-axis-end").textContent = `now (${e.end_s.toFixed(0)} s)`;
    if (e.label !== lastLabel) $("live-status").textContent = `Now: ${e.label || "no speech"}`;
    lastLabel = e.label;
  }

  function onSummary(s) {
    $("live-summary").textContent = !s.windows
      ? `Stream ended after ${s.duration_s.toFixed(1)} s, before a whole window.`
      : s.no_speech ? `Stream ended: ${s.duration_s.toFixed(1)} s, ${s.windows} windows; no speech heard.`
      : `Stream ended: ${s.duration_s.toFixed(1)} s, ${s.windows} windows (${s.speech_windows} with speech); ` +
        `overall ${s.label} (${pct(s.confidence)}).`;
  }

  async function openAudio() {
    const mic = await navigator.mediaDevices.getUserMedia(
      { audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false } });
    // A 16 kHz context makes the browser resample; where it cannot connect a microphone to
    // one (Firefox), the context's own rate is sent and the server resamples.
    let ctx = new AudioContext({ sampleRate: RATE }), source;
    try {
      source = ctx.createMediaStreamSource(mic);
    } catch (_) {
      await ctx.close();
      ctx = new AudioContext();
      source = ctx.createMediaStreamSource(mic);
    }
    await ctx.audioWorklet.addModule(new URL("static/pcm-worklet.js", document.baseURI));
    const node = new AudioWorkletNode(ctx, "pcm-frames", { processorOptions: { frame: Math.round(ctx.sampleRate * FRAME_S) } });
    source.connect(node);
    node.connect(ctx.destination);   // pulls the graph; the processor writes no output, so this is silence
    return { mic, ctx, node };
  }

  function streamUrl(rate) {
    const url = new URL("stream", document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const model = (document.querySelector("input[name=model]:checked") || {}).value || "student";
    url.search = new URLSearchParams({ model, sample_rate: String(rate), encoding: "pcm_s16le",
                                       hop_s: String(HOP_S), top_k: "6" }).toString();
    return url;
  }

  async function start() {
    $("live-error").hidden = true;
    $("live-summary").textContent = "";
    events = 0; lastLabel = null;
    let audio;
    try {
      audio = await openAudio();
    } catch (e) {
      showError("microphone_error", `could not open the microphone (${e && e.name ? e.name : e})`);
      return;
    }
    // A browser cannot set headers on a WebSocket: the key travels as a subprotocol, next to
    // ser.stream, which the server picks so that the key is not sent back.
    const key = $("api-key").value.trim();
    const ws = new WebSocket(streamUrl(audio.ctx.sampleRate), key ? ["ser.stream", `ser.key.${key}`] : ["ser.stream"]);
    ws.binaryType = "arraybuffer";
    live = { ws, ...audio };
    audio.node.port.onmessage = (m) => { if (ws.readyState === WebSocket.OPEN) ws.send(m.data); };
    ws.onmessage = (m) => {
      const e = JSON.parse(m.data);
      if (e.type === "window") onWindow(e);
      else if (e.type === "summary") onSummary(e);
      else if (e.type === "error") showError(e.code, e.message);
    };
    ws.onclose = (c) => {
      if (c.code !== 1000 && $("live-error").hidden) showError("connection_closed", `the stream closed (code ${c.code})`);
      stopAudio();
    };
    setUi(true);
    $("live-status").textContent = "Live: listening…";
  }

  function stopAudio() {
    if (!live) return;
    live.mic.getTracks().forEach((t) => t.stop());
    live.node.port.onmessage = null;
    live.ctx.close();
    live = null;
    setUi(false);
  }

  function stop() {
    const ws = live && live.ws;
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "end" }));   // the summary, then a close
    else if (ws) ws.close();
    live.mic.getTracks().forEach((t) => t.stop());
  }

  button.addEventListener("click", () => (live ? stop() : start()));
})();
