"""What runs in the visitor's browser: the page's CSS and the two small scripts its events run.

Why these exist (each found by opening the page as a newcomer, at 1366x768 and at 390 px wide):
- `CSS`: words wrap between words, never inside one ("CLIP4C MR"); the hero stays a few lines tall; a wide table
  scrolls inside its own box instead of widening the page; Compare's columns (one block of HTML) share a grid, keep
  one width and stack on a phone, each picture with its whole caption under it; results are two a row on a phone
  (four cut each caption to "0.948 red …").
- `FRESH_JS`: gradio groups error toasts by type, so a new error was shown as "Error (2)" under the text of an
  earlier one: a new search first closes the toasts left from the last one, and waits (1 s at most) until they
  are gone (a fast error joined a toast still closing and vanished with it). It runs in the browser before the
  search's own request, in the same event (no round trip of its own), and hands the inputs on.
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
/* Compare's columns (views.compare_columns): 7 to a row on a laptop, stacked on a phone; captions whole */
.cmp-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); gap: 14px 12px; }
.cmp-col h3 { margin: 0 0 4px 0; font-size: 1.05rem; }
.cmp-col p { margin: 0 0 4px 0; font-size: 0.85rem; line-height: 1.3; }
.cmp-col p.cmp-about { color: var(--body-text-color-subdued); font-size: 0.78rem; }
.cmp-tiles { display: grid; grid-template-columns: repeat(3, 1fr); gap: 4px; margin-top: 6px; }
.cmp-tiles figure { margin: 0; min-width: 0; }
.cmp-tiles img, .cmp-damaged { width: 100%; aspect-ratio: 1; object-fit: contain; display: block;
  border-radius: 4px; background: var(--background-fill-secondary); }
.cmp-damaged { font-size: 0.65rem; text-align: center; }
.cmp-tiles figcaption { font-size: 0.68rem; line-height: 1.15; text-align: center; overflow-wrap: anywhere; }
.cmp-col ol { margin: 6px 0 0 0; padding-left: 1.2rem; font-size: 0.8rem; }
#results-legend, #results-legend * { font-size: 0.85rem; color: var(--body-text-color); }
@media (max-width: 640px) {
  #hero h2 { font-size: 1.2rem; }
  #results-gallery .grid-container { --grid-cols: 2 !important; }
  .gradio-container { padding-left: 8px !important; padding-right: 8px !important; }
  /* all five tabs in the bar on a phone (gradio moves the ones that do not fit behind a "⋯" menu) */
  #tabs .tab-container button { padding-left: 7px !important; padding-right: 7px !important; font-size: 0.9rem; }
}
"""

FRESH_JS = """async (...inputs) => {
  document.querySelectorAll('[data-testid="toast-close"]').forEach((button) => button.click());
  // wait until they are gone: an error arriving while a closing toast was still there joined its group and
  // vanished with it
  for (let n = 0; n < 40 && document.querySelector('[data-testid="toast-body"]'); n++) {
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  return inputs;  // an event's script hands its inputs on to its function: returned unchanged
}"""

def empties(outputs: int) -> str:
    """A script that empties an event's `outputs` in the browser (a stated class when its text is typed over ...):
    no round trip, where a Python step cost one per keystroke."""
    return "() => " + ('""' if outputs == 1 else "[" + ", ".join(['""'] * outputs) + "]")


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
      const kept = window.cmrRecolour, meta = plot.layout && plot.layout.meta;
      if (kept && meta && meta.drawing === kept.drawing && meta.colour_by !== kept.layout.meta.colour_by) {
        window.cmrApplyRecolour(plot, kept);  // the page redrew this drawing with the colours it was sent with
      }
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

# A map's new colouring (cmr_demo.ui.map_figure.recolouring) applied to the figure on the page, in one
# Plotly.update of its point traces and layout, then its legend marks; only to the drawing it was made for (its id
# in layout.meta). It is kept (window.cmrRecolour): MAP_SELECT_JS applies it again should the page redraw that
# drawing from the figure it holds (which still has the colours it was sent with).
RECOLOUR_JS = """(payload) => {
  window.cmrApplyRecolour = window.cmrApplyRecolour || ((gd, p) => {
    if (!p || !gd || !window.Plotly || !gd.data || !gd.layout || !gd.layout.meta) return false;
    if (gd.layout.meta.drawing !== p.drawing) return false;
    const index = new Map(gd.data.map((trace, i) => [trace.meta, i]));  // plotly.py drops `uid`
    const current = (trace, key) => key.split('.').reduce((v, k) => (v == null ? undefined : v[k]), trace);
    const styles = {...p.traces, ...p.legend}, traces = [], update = {};
    Object.keys(styles).forEach((id) => { if (index.has(id)) traces.push(id); });
    // one call for every trace; a key only where some trace's value changes (each key set costs plotly a pass)
    p.keys.forEach((key) => {
      const values = traces.map((id) => (styles[id][key] === undefined ? null : styles[id][key]));
      const same = values.every((v, n) => !Array.isArray(v) &&
                                          v === (current(gd.data[index.get(traces[n])], key) ?? null));
      if (!same) update[key] = values;
    });
    const layout = {meta: p.layout.meta};
    if (JSON.stringify(gd.layout.coloraxis || null) !== JSON.stringify(p.layout.coloraxis)) {
      layout.coloraxis = p.layout.coloraxis;
    }
    window.Plotly.update(gd, update, layout, traces.map((id) => index.get(id)));
    return true;
  });
  if (!payload) return;
  const gd = document.querySelector('#map-plot .js-plotly-plot');
  if (window.cmrApplyRecolour(gd, payload)) window.cmrRecolour = payload;
}"""

def plotly_preload() -> str:
    """A script that loads gradio's plotly bundle (4.6 MB) while the page is idle after it opened, and draws one small
    hidden plot (plotly's first drawing is its slowest), so the Map tab's first map does not wait for either: the
    tab's first map took 2.2 s, of which the map itself 0.3. The bundle's file name is gradio's build's (read from
    the installed package); nothing is loaded when it is not found."""
    from pathlib import Path

    import gradio
    found = sorted((Path(gradio.__file__).parent / "templates" / "frontend" / "assets").glob("PlotlyPlot-*.js"))
    if not found:
        return "() => {}"
    return """() => {
  const load = () => import(new URL('assets/%s', document.baseURI).href).then(() => {
    if (!window.Plotly) return;
    const div = document.createElement('div');
    div.style.cssText = 'position:absolute;left:-9999px;top:0;width:400px;height:300px';
    document.body.appendChild(div);
    window.Plotly.newPlot(div, [{x: [1, 2, 3], y: [2, 1, 3], mode: 'markers', type: 'scatter',
                                  marker: {symbol: ['circle', 'diamond-open', 'star']}}], {})
      .then(() => { window.Plotly.purge(div); div.remove(); });
  }).catch(() => {});
  (window.requestIdleCallback || ((f) => setTimeout(f, 500)))(load, {timeout: 2000});
}""" % found[0].name


# the drawing canvas opens with its brush in hand (gradio's canvas waits for a click on its brush tool first)
BRUSH_JS = """() => {
  const take = (tries) => {
    const brush = document.querySelector('#sketch button[aria-label="Brush"]');
    if (brush) { if (!brush.classList.contains('selected')) brush.click(); }
    else if (tries > 0) setTimeout(() => take(tries - 1), 150);
  };
  setTimeout(() => take(20), 100);
}"""
