"""MODEL_CARD.md text for a bundle."""

from __future__ import annotations


def model_card(meta: dict, rep: dict, description: str) -> str:
    split = meta["training"].get("split", {})
    speakers = split.get("speakers", {})
    cal = meta.get("extra", {}).get("calibration", {})
    recall = " · ".join(f"{k} {v:.2f}" for k, v in rep["per_class_recall"].items())
    comparison = meta.get("extra", {}).get("comparison", "")
    quant = meta.get("extra", {}).get("quantization", {})
    int8 = (f"\n- {quant['method']}; test UA change vs the float32 bundle: {quant['ua_change_vs_float32']:+.3f}."
            if "ua_change_vs_float32" in quant else "")
    return f"""# {meta['name']} {meta['version']} ({meta['role']})

{description}

- Parameters: {meta['parameters']:,}; precision {meta['precision']}.
- Input: float32 waveform `[batch, samples]` at {meta['sample_rate']} Hz; output: logits over
  {', '.join(meta['labels'])}.
- Windows of {meta['window_s']} s, hop {meta['hop_s']} s, silence trim {'on' if meta['trim_silence'] else 'off'};
  the utterance result is the mean of the window probabilities.
- Calibration temperature {meta['temperature']:.3f}, fitted on the validation speakers
  (ECE {cal.get('ece_before', float('nan')):.3f} -> {cal.get('ece_after', float('nan')):.3f} there).{int8}

## Data and split
{meta['training'].get('data', '?')}, speaker-independent split (seed {split.get('seed', '?')}):
test speakers {', '.join(speakers.get('test', []))}; validation speakers
{', '.join(speakers.get('val', []))}; no speaker is in two parts.

## Metrics on the test speakers (never seen in training or calibration)
| clips | accuracy | UA | macro-F1 | ECE |
|---|---|---|---|---|
| {rep['n']} | {rep['accuracy']:.3f} | {rep['ua']:.3f} | {rep['macro_f1']:.3f} | {rep['ece']:.3f} |

Per-class recall: {recall}.
{comparison}
## License
Weights: {meta['license']['weights']}. Data: {meta['license']['data']}.
"""
