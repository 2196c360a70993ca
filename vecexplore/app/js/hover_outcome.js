// CustomJSHover for @o, the per-image outcomes packed by colouring.pack_outcomes.
// Bound: value (uint32), task ("detection" | "classification"), names (class names).
// Returns plain text; the tooltip template escapes it.
const v = value >>> 0
if (task === "detection") {
  const tp = v & 1023, fp = (v >>> 10) & 1023, fn = (v >>> 20) & 1023
  const n = tp + fp + fn
  const rate = n > 0 ? (fp + fn) / n : 0
  return `TP ${tp} · FP ${fp} · FN ${fn} · error rate ${rate.toFixed(2)}`
}
const label = (v & 0xffff) - 1, pred = (v >>> 16) - 1
const name = (k) => (k >= 0 && k < names.length ? names[k] : "none")
if (label < 0)
  return `unlabelled · predicted ${name(pred)}`
if (pred < 0)
  return `${name(label)} · no prediction`
return label === pred ? `correct · ${name(label)}` : `incorrect · ${name(label)} → ${name(pred)}`
