"""What the tests and the benchmarks share, so that neither reaches into the other's folder: starting `app.py` in a
subprocess (`app_server`), the fuzzer of gradio's event routes (`event_fuzz`), and the hand-written inputs both
measure on (`world_queries`: plain and out-of-world texts for the default world, with `measure`; `visitor_pictures`:
drawings and outside pictures made by code that shares nothing with the generators). Not part of the installed
package: run from the checkout (`python -m pytest`, `python bench/...`)."""
