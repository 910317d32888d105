"""What runs in the visitor's browser: the page's CSS and the two small scripts its events run.

Why these exist (each found by opening the page as a newcomer, at 1366x768 and at 390 px wide):
- `CSS`: words wrap between words, never inside one ("CLIP4C MR"); the hero stays a few lines tall; a wide table
  scrolls inside its own box instead of widening the page; Compare's columns keep one width (a lone last column
  stretched its two thumbnails to 600 px each) and stack on a phone; results are two a row on a phone (four cut each
  caption to "0.948 red …").
- `FRESH_JS`: gradio groups error toasts by type, so a new error was shown as "Error (2)" under the text of an
  earlier one: a new search first closes the toasts left from the last one, and waits (1 s at most) until they
  are gone (a fast error joined a toast still closing and vanished with it).
- `MAP_SELECT_JS`: plotly tells only the browser which points a box or lasso selected on a map; this passes them
  (id and modality of each) to the app through a hidden textbox (#map-selection), whose change lists them. It
  listens to every map drawn in #map-plot, redrawn maps included (checked twice a second). Only a selection with
  points is passed on: the redraw that outlines the region on every map reports an empty one.
- `SHOW_RESULTS_JS` (`scroll_to`): on a phone the results sit below the query column; after a search they are
  scrolled into view when they are off screen (on a wide screen they are beside the query and nothing moves). The
  same for Compare's columns after a click in the disagreement table far below them.
"""
from __future__ import annotations

CSS = """
.prose, .prose * { word-break: normal; overflow-wrap: break-word; hyphens: manual; }
#hero h2 { margin: 0 0 0.35rem 0; font-size: 1.45rem; line-height: 1.25; }
#hero p { margin: 0; }
#hero { padding-bottom: 0; }
#gallery-details { margin-top: 0; }
.table-wrap, .table-container { max-width: 100%; overflow-x: auto; }
/* a word is never broken inside a table cell (column widths fit the longest word; a phone scrolls the table) */
.table-wrap td, .table-wrap th { word-break: normal; overflow-wrap: normal; }
#compare-columns > div { flex: 1 1 160px !important; max-width: 230px; }
#results-legend, #results-legend * { font-size: 0.85rem; color: var(--body-text-color); }
@media (max-width: 640px) {
  #hero h2 { font-size: 1.2rem; }
  #results-gallery .grid-container { --grid-cols: 2 !important; }
  .gradio-container { padding-left: 8px !important; padding-right: 8px !important; }
  /* all five tabs in the bar on a phone (gradio moves the ones that do not fit behind a "⋯" menu) */
  #tabs .tab-container button { padding-left: 7px !important; padding-right: 7px !important; font-size: 0.9rem; }
}
"""

FRESH_JS = """async () => {
  document.querySelectorAll('[data-testid="toast-close"]').forEach((button) => button.click());
  // wait until they are gone: an error arriving while a closing toast was still there joined its group and
  // vanished with it
  for (let n = 0; n < 40 && document.querySelector('[data-testid="toast-body"]'); n++) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}"""

def scroll_to(elem_id: str) -> str:
    """A script that scrolls the element into view when it is off screen (or low on it); nothing moves otherwise."""
    return """() => {
  const el = document.getElementById('%s');
  if (!el) return;
  const top = el.getBoundingClientRect().top;
  if (top < 0 || top > window.innerHeight * 0.6) el.scrollIntoView({behavior: 'smooth', block: 'start'});
}""" % elem_id


SHOW_RESULTS_JS = scroll_to("search-summary")

MAP_SELECT_JS = """() => {
  if (window.cmrMapSelect) return;
  window.cmrMapSelect = true;
  const send = (pairs) => {
    const box = document.querySelector('#map-selection textarea, #map-selection input');
    if (!box) return;
    if (!pairs.length) return;  // a redraw reports an empty selection too: the page's own button clears it
    const text = JSON.stringify(pairs);
    if (box.value === text) return;
    box.value = text;
    box.dispatchEvent(new Event('input', {bubbles: true}));
  };
  setInterval(() => {
    document.querySelectorAll('#map-plot .js-plotly-plot').forEach((plot) => {
      if (plot.cmrListening || typeof plot.on !== 'function') return;
      plot.cmrListening = true;
      plot.on('plotly_selected', (event) => {
        if (!event || !event.points) return;
        const seen = new Set(), pairs = [];
        event.points.forEach((point) => {
          const c = point.customdata;
          if (!Array.isArray(c) || typeof c[0] !== 'string' || (c[1] !== 'image' && c[1] !== 'text')) return;
          const key = c[1] + ' ' + c[0];
          if (!seen.has(key)) { seen.add(key); pairs.push([c[0], c[1]]); }
        });
        send(pairs);
      });
    });
  }, 500);
}"""

# the drawing canvas opens with its brush in hand (gradio's canvas waits for a click on its brush tool first)
BRUSH_JS = """() => {
  const take = (tries) => {
    const brush = document.querySelector('#sketch button[aria-label="Brush"]');
    if (brush) { if (!brush.classList.contains('selected')) brush.click(); }
    else if (tries > 0) setTimeout(() => take(tries - 1), 150);
  };
  setTimeout(() => take(20), 100);
}"""
