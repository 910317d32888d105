"""A real headless Chromium (Debian's package) drives the launched app: search, then every tab and its plots.

Screenshots go to $CMR_SCREENSHOTS when set (the README's pictures are made this way), else to a temp dir.
"""
import os
import re
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]

playwright_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    if os.environ.get("CMR_REQUIRE_BROWSER"):
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)")
    pytest.skip("Debian's chromium is not installed (.ci/run installs it with apt)", allow_module_level=True)


@pytest.fixture(scope="module")
def page(app_url):
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})  # a laptop: the screenshots in docs/
        page.set_default_timeout(30_000)
        page.goto(app_url)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def classes(app_url) -> list[str]:
    """The first bundle's class names: the tests run on the test bundles and on assets/ (for docs/screenshots)."""
    import httpx
    return httpx.get(app_url + "api/v1/bundles", timeout=30).json()[0]["classes"]


def a_class(classes: list[str], word: str) -> str:
    return next(c for c in classes if word in c.split())


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def test_header_says_what_the_gallery_is(page):
    page.get_by_text("About this gallery", exact=False).first.click()  # folded under the first line
    header = page.locator("#header-card").inner_text()
    assert "Relevant" in header and "classes" in header and "Backbone" in header
    assert "runs/" not in header  # the backbone is named as the bundle holds it, not by a build-machine path
    page.locator("#class-examples img").first.wait_for(state="visible")
    names = page.get_by_role("tablist").first.get_by_role("tab").all_inner_texts()  # one row of tabs, all five
    assert [n.strip() for n in names] == ["Search", "Compare", "Map", "Lab", "About"], (
        names
    )
    assert page.locator("#class-examples img").count() >= 2


def test_search_errors_show_the_apps_message(page):
    page.get_by_label("Text query").first.fill("")
    page.locator("#search-text-btn").click()
    message = page.get_by_text("query is empty", exact=False).first
    message.wait_for(state="visible")  # the text itself, not a bare "Error" badge
    page.locator(".toast-close").first.click()  # dismissed, so later screenshots show the page


def test_a_stated_class_is_cleared_when_the_query_changes(page):
    open_tab(page, "Compare")
    box = page.get_by_label("Text query").nth(1)
    dropdown = page.get_by_label("Class of the query (optional)")
    assert dropdown.input_value() not in ("", "(unknown)")  # the first example, with the class it was stated for
    box.fill("two hearts")  # replaced at once, as a paste does (no key events)
    page.locator("#compare-btn").click()
    # this comparison's own answer (the tab arrives with the opening query's: its columns read "looks like" too)
    page.locator("#compare-notice").get_by_text("two hearts", exact=False).wait_for()
    for _ in range(60):  # the class is cleared by the step after the comparison
        if dropdown.input_value() in ("", "(unknown)"):
            break
        page.wait_for_timeout(250)
    assert dropdown.input_value() in ("", "(unknown)")  # that class was not this query's: not used, cleared
    box.fill("two hearts")
    box.press_sequentially(" and a star", delay=20)  # typing clears a class at once
    page.wait_for_timeout(500)
    assert dropdown.input_value() in ("", "(unknown)")
    open_tab(page, "Search")


def test_a_query_from_outside_the_world_is_flagged(page):
    page.get_by_label("Text query").first.fill("a dog")
    page.locator("#search-text-btn").click()
    page.get_by_text("outside this gallery's world", exact=False).first.wait_for(state="visible")
    summary = page.locator("#search-summary").inner_text()
    assert "Closest class" in summary and "%" not in summary.split("outside this gallery's world")[1]


def test_search_shows_result_images(page, shots):
    page.get_by_label("Text query").first.fill("a red star on a striped background")
    page.locator("#search-text-btn").click()
    # the page is shared with earlier tests: wait for this query's answer, then for its pictures (they arrive one by
    # one: counting right after the first appeared once saw 0 of them)
    page.locator("#search-summary").get_by_text("a red star on a striped background", exact=False).wait_for()
    page.wait_for_function("() => document.querySelectorAll('#results-gallery img').length >= 5")
    assert "query:" in page.locator("#search-summary").inner_text()
    page.wait_for_timeout(800)  # let the thumbnails finish loading for the screenshot
    page.screenshot(path=str(shots / "search.png"), full_page=True)


def test_clicking_a_gallery_item_searches_texts_with_it(page):
    page.get_by_text("Browse the gallery").click()
    thumbs = page.locator("#browse-gallery .thumbnail-item img")
    thumbs.nth(20).wait_for(state="visible")
    thumbs.nth(3).click()
    page.get_by_text("gallery image", exact=False).first.wait_for(state="visible")
    summary = page.locator("#search-summary").inner_text()
    assert "→ texts" in summary and "AP" in summary  # a gallery item's class is known: AP is shown


def test_an_uploaded_picture_searches_texts_and_can_be_searched_again(page, small_bundle, tmp_path, app_cache, shots):
    """The upload is deleted from disk once read (issue 14); the page sends the same file again for a
    second search (another objective), which must still work."""
    picture = tmp_path / "my picture.png"
    picture.write_bytes((small_bundle / "gallery" / "images" / "00007.png").read_bytes())
    page.locator("input[type=file]").first.set_input_files(str(picture))
    page.locator("#search-image-btn").click()
    summary = page.locator("#search-summary")
    page.get_by_text("uploaded picture", exact=False).filter(visible=True).first.wait_for()
    assert "→ texts" in summary.inner_text()
    assert not list(app_cache.rglob("my picture.png"))  # read once, then deleted
    page.get_by_label("Objective", exact=True).first.click()
    page.get_by_role("option", name=re.compile(r"^ce · ")).click()  # each objective named with what it is
    page.locator("#search-image-btn").click()
    page.wait_for_function("() => document.querySelector('#search-summary').innerText.trim().startsWith('ce ')")
    assert "uploaded picture" in summary.inner_text() and "no longer on the server" not in page.content()
    ranks = re.findall(r"^(\d+)\n-?\d+\.\d+$", page.locator("#results-table").inner_text(), re.MULTILINE)
    assert ranks[:5] == ["1", "2", "3", "4", "5"], ranks  # rank, score, ... one line per cell
    page.screenshot(path=str(shots / "search-upload.png"), full_page=True)


def test_compare_tab_shows_columns_and_plots(page, shots, classes):
    open_tab(page, "Compare")
    page.get_by_label("Text query").nth(1).fill("two hearts")
    page.get_by_label("Class of the query (optional)").click()
    page.get_by_role("option", name=a_class(classes, "heart"), exact=True).click()
    page.locator("#compare-btn").click()
    page.get_by_text("first relevant #", exact=False).filter(visible=True).first.wait_for()  # the stated class is used
    page.get_by_text("AP", exact=False).first.wait_for(state="visible")
    # the leaderboard's forest plot and the class heatmap arrive when the tab opens (made after start-up)
    page.locator("#leaderboard-plot .js-plotly-plot").wait_for(state="visible")
    page.locator("#class-heatmap .js-plotly-plot").wait_for(state="visible")
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "compare.png"), full_page=True)


def test_map_tab_shows_the_maps(page, shots):
    open_tab(page, "Map")
    page.locator("#map-btn").click()
    plot = page.locator("#map-plot .js-plotly-plot")
    plot.wait_for(state="visible")
    assert plot.locator(".scatterlayer .trace").count() > 10
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "map.png"), full_page=True)


def test_the_map_picks_an_item_from_a_paged_list(page, shots, classes):
    """The map tab's item list is paged and filtered like Search's (not the whole gallery at once): filtered by
    a class, a click selects that item, whose id fills the box, and the maps are drawn again with it."""
    open_tab(page, "Map")
    page.get_by_text("Pick a gallery item to highlight it").click()
    where = page.locator("#pick-where")
    where.get_by_text("page 1 of", exact=False).wait_for()
    total = int(re.search(r"of (\d+)", where.inner_text()).group(1))
    page.locator("#pick-class input").click()
    page.get_by_role("option", name=a_class(classes, "star"), exact=True).click()
    page.wait_for_function("() => !document.querySelector('#pick-where').innerText.includes('of %d ')" % total)
    shown = int(re.search(r"of (\d+)", where.inner_text()).group(1))
    assert 0 < shown < total
    thumb = page.locator("#pick-gallery .thumbnail-item").nth(1)
    thumb.locator("img").wait_for(state="visible")
    caption = page.locator("#pick-gallery .thumbnail-item").nth(1).inner_text()
    thumb.click()
    page.wait_for_function("() => [...document.querySelectorAll('textarea')].some(t => "
                           "t.closest('label')?.innerText.includes('Selected gallery item id') && t.value)")
    picked = page.get_by_label("Selected gallery item id").input_value()
    assert picked and (not caption.strip() or picked in caption), (picked, caption)
    page.locator("#map-plot .js-plotly-plot").wait_for(state="visible")
    page.wait_for_timeout(800)
    page.screenshot(path=str(shots / "map-pick.png"), full_page=True)


def drag_box(page, plot, start=(0.1, 0.1), end=(0.6, 0.6)) -> None:
    """A box dragged on the first map (plotly's select mode is the maps' default drag)."""
    panel = plot.locator(".nsewdrag").first
    panel.scroll_into_view_if_needed()
    box = panel.bounding_box()
    at = [(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy) for fx, fy in (start, end)]
    page.mouse.move(*at[0])
    page.mouse.down()
    page.mouse.move(*at[1], steps=10)
    page.mouse.up()


def colour_by_ap_difference(page):
    open_tab(page, "Map")
    page.locator("#map-colour-by").get_by_text("AP difference", exact=False).click()
    page.locator("#map-other").wait_for(state="visible")
    plot = page.locator("#map-plot .js-plotly-plot")
    plot.locator(".colorbar").first.wait_for()  # one colour bar, diverging around 0, says what it means
    page.wait_for_function("() => document.querySelector('#map-plot .colorbar').textContent.includes('better')")
    return plot


def test_the_map_colours_by_ap_difference_and_lists_a_selected_region(page, shots):
    """Colour by where two objectives disagree; a box dragged on a map lists the region's items with their AP under
    each shown objective, outlines them on every map, and a click on one searches with it (Search shows it)."""
    plot = colour_by_ap_difference(page)
    page.screenshot(path=str(shots / "map-ap-diff.png"), full_page=True)
    drag_box(page, plot)
    region = page.locator("#map-region")
    region.get_by_text("points selected", exact=False).wait_for()
    assert int(re.search(r"(\d+) points selected", region.inner_text()).group(1)) > 0
    assert "Mean AP" in region.inner_text()
    # the redrawn maps outline the region on each panel (x: the first map, x2: the one beside it)
    page.wait_for_function("() => { const p = document.querySelector('#map-plot .js-plotly-plot'); return p && "
                           "new Set(p.data.filter(t => t.name === 'selected region').map(t => t.xaxis || 'x')).size >= "
                           "2 }")
    table = page.locator("#region-table")
    table.get_by_text("query with its").first.wait_for()
    page.wait_for_timeout(800)
    page.screenshot(path=str(shots / "map-region.png"), full_page=True)
    item_id = re.search(r"(\S+)\s+(?:image|text)\s", table.inner_text().split("text", 1)[1]).group(1)  # first row
    table.get_by_text(item_id, exact=True).filter(visible=True).first.click()
    page.locator("#search-summary").get_by_text(item_id, exact=False).wait_for(state="visible")
    assert "AP" in page.locator("#search-summary").inner_text()
    open_tab(page, "Map")
    page.locator("#map-clear-region").click()
    region.get_by_text("Select a region", exact=False).wait_for()
    page.locator("#map-colour-by").get_by_text("class", exact=True).click()


def test_about_tab(page, shots):
    open_tab(page, "About")
    page.get_by_text("What is being served").wait_for(state="visible")
    page.get_by_text("The paper's studies, as measured").click()  # the study figures the repository holds
    figure = page.locator("img[src*='imbalance.png'], img[src*='sensitivity.png']").first
    figure.wait_for(state="visible")
    assert figure.evaluate("img => img.naturalWidth") > 0
    page.screenshot(path=str(shots / "about.png"), full_page=True)


def test_the_lab_trains_live_and_its_run_joins_compare(page, shots):
    open_tab(page, "Lab")
    page.locator("#lab-train-btn").click()
    page.locator("#lab-result").get_by_text("test mAP@all", exact=False).wait_for(timeout=150_000)  # runs <= 90 s
    assert "It is now in Compare" in page.locator("#lab-result").inner_text()
    page.locator("#lab-plot .js-plotly-plot").wait_for(state="visible")
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "lab.png"), full_page=True)
    open_tab(page, "Compare")
    page.locator("#compare-btn").click()
    page.get_by_text("lab 1:", exact=False).filter(visible=True).first.wait_for()


def test_switching_to_a_features_only_bundle(page, shots):
    """The header's picker switches to the second bundle (features only) without a reload: the free-text and
    picture inputs give way to a one-line reason, the gallery list pages through items as a table, a click on
    one searches with it, and Compare runs on an item; switching back restores the first bundle."""
    open_tab(page, "Search")
    page.locator("#bundle-pick input").click()
    page.get_by_role("option").nth(1).click()
    page.get_by_text("ships features only", exact=False).first.wait_for(state="visible")
    assert not page.locator("#search-text-btn").is_visible() and not page.locator("#search-image-btn").is_visible()
    first_id = page.locator("#item-query textarea").get_attribute("placeholder")
    page.get_by_text("Browse the gallery").click()
    page.locator("#browse-where").get_by_text("page 1 of", exact=False).wait_for()
    page.locator("#browse-table").get_by_text(first_id, exact=True).filter(visible=True).first.click()
    page.locator("#search-summary").get_by_text(f"gallery image {first_id}", exact=False).wait_for()
    assert "AP" in page.locator("#search-summary").inner_text()
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "features-only.png"), full_page=True)
    open_tab(page, "Compare")
    page.locator("#compare-btn").click()  # the item id is filled in for a bundle without text queries
    page.get_by_text("first relevant #", exact=False).filter(visible=True).first.wait_for()
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "features-only-compare.png"), full_page=True)
    colour_by_ap_difference(page)
    page.wait_for_timeout(500)
    page.screenshot(path=str(shots / "features-only-map-ap-diff.png"), full_page=True)
    open_tab(page, "Search")
    page.locator("#bundle-pick input").click()
    page.get_by_role("option").nth(0).click()
    page.locator("#search-text-btn").wait_for(state="visible")
    assert not page.get_by_text("ships features only", exact=False).first.is_visible()
