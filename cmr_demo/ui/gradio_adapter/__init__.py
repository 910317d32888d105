"""The one place the app reaches into gradio's internals, for what no public hook does. Every internal below has a
canary in tests/test_ui_context.py (fast suite) that fails, naming the installed gradio version, on an upgrade
that moves it.

| internal | used by | canary |
|---|---|---|
| `Blocks.preprocess_data(block_fn, inputs, ...)`, `Blocks.process_api` | `blocks.ServedBlocks` |
`test_the_blocks_hooks_are_where_the_adapter_overrides_them` |
| `Blocks.queue` building `queueing.Queue(...)` into `Blocks._queue` | `blocks.ServedBlocks.queue` |
`test_the_fair_queue_is_built_where_gradio_builds_its_queue` |
| `Queue.push`, `event_queue_per_concurrency_id`, `active_jobs`, `remove_from_queue`, `pending_messages_per_session`,
`pending_event_ids_session`, `event_ids_to_events`, `Event` | `queue.FairQueue`, `queue.Streams` |
`test_the_queue_internals_the_adapter_reads_are_where_it_reads_them` |
| `process_api(root_path=...)` as gradio's `call_process_api` passes it | `blocks.page_root` |
`test_the_page_root_is_what_gradio_passes_its_events` |
| `Blocks.state_session_capacity` | `blocks.ServedBlocks` (`sessions`) |
`test_the_blocks_hooks_are_where_the_adapter_overrides_them` |
| `Blocks.upload_file_set`, `temp_file_sets`, `Block.keep_in_cache`, `utils.get_upload_folder` | `files.GradioFiles` |
`test_the_file_registries_are_where_the_upload_store_reads_them` |
| `Examples.dataset.samples`, `Examples.load_input_event` | `files.example_pictures`, `files.example_click` |
`test_the_file_registries_are_where_the_upload_store_reads_them` |
| route paths `/queue/join`, `/run/`, `/api/`, `/call/`, `/queue/data`, `/upload`; event keys; `Blocks.fns[i].api_name`
| `routes.GradioRoutes` | `test_the_routes_the_middleware_checks_are_gradios` |
| `mount_gradio_app(enable_monitoring=...)` | cmr_demo.serve.webserver |
`test_the_queue_internals_the_adapter_reads_are_where_it_reads_them` |

Public API only elsewhere: `gr.validate`, `gr.skip`, `gr.Error`.
"""
from cmr_demo.ui.gradio_adapter.blocks import ServedBlocks, page_root
from cmr_demo.ui.gradio_adapter.files import GradioFiles, cache_folder, example_click, example_pictures
from cmr_demo.ui.gradio_adapter.queue import FairQueue, OwnQueue, Streams
from cmr_demo.ui.gradio_adapter.routes import GradioRoutes

__all__ = ["FairQueue", "GradioFiles", "GradioRoutes", "OwnQueue", "ServedBlocks", "Streams", "cache_folder",
           "example_click", "example_pictures", "page_root"]
