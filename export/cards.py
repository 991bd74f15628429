"""MODEL_CARD.md text for a bundle."""

from __future__ import annotations


def model_card(meta: dict, rep: dict | None, description: str) -> str:
    """The card of a bundle; `rep` is its report on the test speakers, None when it was
    trained on every speaker (then the card says so and gives the k-fold estimate)."""
    split = meta["training"].get("split", {})
    speakers = split.get("speakers", {})
    cal = meta.get("extra", {}).get("calibration", {})
    comparison = meta.get("extra", {}).get("comparison", "")
    quant = meta.get("extra", {}).get("quantization", {})
    int8 = (f"\n- {quant['method']}; test UA change vs the float32 bundle: {quant['ua_change_vs_float32']:+.3f}."
            if "ua_change_vs_float32" in quant else f"\n- {quant['method']}." if quant else "")
    if "agreement" in quant:
        a = quant["agreement"]
        int8 += (f" Same label as the float32 bundle on {a['label_agreement']:.1%} of {a['clips']} held-out clips "
                 f"(mean probability distance {a['mean_prob_distance']:.4f})"
                 + ("." if a["meets_bar"] else ": **below the 97 % bar; serve the float32 bundle**."))
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
{_speakers(speakers)}
{_metrics(rep)}{comparison}
## License
Weights: {meta['license']['weights']}. Data: {meta['license']['data']}.
"""


def _speakers(speakers: dict) -> str:
    if not speakers.get("test"):
        return (f"trained on {len(speakers.get('train', []))} speakers, validation speakers "
                f"{', '.join(speakers.get('val', []))} (early stopping, calibration). **There is no "
                "held-out test set**: every speaker was used, so the expected score below is the "
                "k-fold estimate of the same recipe, not a measurement of this model.")
    return (f"test speakers {', '.join(speakers['test'])}; validation speakers "
            f"{', '.join(speakers.get('val', []))}; no speaker is in two parts.")


def _metrics(rep: dict | None) -> str:
    if rep is None:
        return ""
    recall = " · ".join(f"{k} {v:.2f}" for k, v in rep["per_class_recall"].items())
    return f"""
## Metrics on the test speakers (never seen in training or calibration)
| clips | accuracy | UA | macro-F1 | ECE |
|---|---|---|---|---|
| {rep['n']} | {rep['accuracy']:.3f} | {rep['ua']:.3f} | {rep['macro_f1']:.3f} | {rep['ece']:.3f} |

Per-class recall: {recall}.
"""
