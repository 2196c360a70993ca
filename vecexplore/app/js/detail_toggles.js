// Detail view toggles, in the browser only: no round trip. Bound: toggles (CheckboxGroup
// "Ground truth" / "Predictions" / "Labels"), layers (CheckboxGroup "Boxes" / "Masks", or null
// when the run has no masks), gt, pred (box renderers), gt_masks, pred_masks (patch renderers),
// gt_labels, pred_labels (text renderers).
const on = new Set(toggles.active)
const layer = layers == null ? new Set([0]) : new Set(layers.active)
for (const r of gt) r.visible = on.has(0) && layer.has(0)
for (const r of pred) r.visible = on.has(1) && layer.has(0)
for (const r of gt_masks) r.visible = on.has(0) && layer.has(1)
for (const r of pred_masks) r.visible = on.has(1) && layer.has(1)
for (const r of gt_labels) r.visible = on.has(0) && on.has(2)
for (const r of pred_labels) r.visible = on.has(1) && on.has(2)
