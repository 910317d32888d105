"""The Gradio page over the service: one module per tab (`search_tab`, `compare_tab`, `map_tab`, `lab_tab`), the
gallery list they share (`pager`), the page that puts them together (`page.build_demo`), what the page decides
without gradio (`context`), the values and figures it shows (`views`, `plots`), user errors at its edge
(`errors`), the app built in one pass (`factory`), and the one adapter over gradio's internals (`gradio_adapter`)."""
