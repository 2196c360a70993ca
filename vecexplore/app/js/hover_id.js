// CustomJSHover for @image_id: the plain integer (no thousands separators), so that it
// can sit inside a URL. Bound: value (a float64 holding an integer id).
return String(Math.round(value))
