// CustomJSHover for @c of the object scatter: the object's outcome code (an index into
// eval.outcomes.OBJECT_OUTCOMES) and its class (the source's "cls" column at the hovered row).
// Bound: outcomes (the outcome names), names (class names), source (the object scatter's source).
// Returns plain text; the tooltip template escapes it.
const code = Math.round(value)
const column = source.data.cls
const c = column ? column[special_vars.index] : -1
const cname = c >= 0 && c < names.length ? names[c] : ""
const outcome = code >= 0 && code < outcomes.length ? outcomes[code] : "?"
return cname ? `${cname} · ${outcome}` : outcome
