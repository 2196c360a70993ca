// Page export: when the server writes a new export it puts "url|file name" in this hidden
// Div's text; download it through the run's export route. Bound: cb_obj (the Div).
const value = cb_obj.text
if (!value)
  return
const [url, name] = value.split("|")
const a = document.createElement("a")
a.href = url
a.download = name || ""
a.style.display = "none"
document.body.appendChild(a)
a.click()
a.remove()
