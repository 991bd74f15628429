// AudioWorklet processor: the microphone's samples -> 16-bit little-endian PCM frames of
// `frame` samples, posted to the page, which sends each one on the WebSocket.
"use strict";

class PcmFrames extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.frame = new Int16Array(options.processorOptions.frame);
    this.filled = 0;
  }

  process(inputs) {
    const channels = inputs[0];
    if (!channels || !channels.length) return true;   // no input yet
    const n = channels[0].length;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (const ch of channels) v += ch[i];
      v = Math.max(-1, Math.min(1, v / channels.length));   // mono: the mean of the channels
      this.frame[this.filled++] = v < 0 ? v * 0x8000 : v * 0x7fff;
      if (this.filled === this.frame.length) {
        const out = this.frame.slice().buffer;
        this.port.postMessage(out, [out]);
        this.filled = 0;
      }
    }
    return true;
  }
}

registerProcessor("pcm-frames", PcmFrames);
