// Players' names inside the page's own text. Each goes in its own <bdi> (as text, never
// markup), so a right-to-left name cannot reorder the words around it in a feed line.

export function bdi(name) {
  const el = document.createElement("bdi");
  el.textContent = String(name ?? "");
  return el;
}
