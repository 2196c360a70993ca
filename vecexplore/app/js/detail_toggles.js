// Detail view toggles (CheckboxGroup "Ground truth" / "Predictions" / "Labels"), in the browser
// only: no round trip. Bound: gt, pred (box renderers), gt_labels, pred_labels (text renderers).
const on = new Set(cb_obj.active)
for (const r of gt) r.visible = on.has(0)
for (const r of pred) r.visible = on.has(1)
for (const r of gt_labels) r.visible = on.has(0) && on.has(2)
for (const r of pred_labels) r.visible = on.has(1) && on.has(2)
