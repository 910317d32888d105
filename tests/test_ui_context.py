"""The page's policy, without a browser: which bundle a request means, defaults per bundle, whose class a stated class
is, page arithmetic; and the one adapter over gradio's internals, checked against the installed gradio."""
import inspect

import gradio as gr
import pytest

from cmr_demo.serve.service import RetrievalService
from cmr_demo.bundle.load import load_bundle
from cmr_demo.ui.context import Context, class_for, given, page_number, stated_for, step_page
from cmr_demo.ui import gradio_adapter
from cmr_demo.ui.gradio_adapter import blocks as blocks_module


@pytest.fixture(scope="module")
def ctx(small_bundle, features_bundle):
    return Context({"small": RetrievalService(load_bundle(small_bundle), "small"),
                    "feats": RetrievalService(load_bundle(features_bundle), "feats")})


def test_the_first_bundle_is_the_default_and_unknown_names_are_refused(ctx):
    assert (
        ctx.service(None).name == "small" and ctx.service("").name == "small" and ctx.service("feats").name == "feats"
    )
    from cmr_demo.serve.inputs import InputError
    with pytest.raises(InputError, match="unknown bundle 'nope'; choose one of: small, feats"):
        ctx.service("nope")


def test_a_value_left_at_the_first_bundles_default_means_the_picked_bundles(ctx):
    small, feats = ctx.services["small"], ctx.services["feats"]
    first = ctx.defaults["small"]
    assert ctx.resolve(small, "objective", first.objective) == first.objective  # the first bundle: kept
    assert ctx.resolve(feats, "query", first.query) == ctx.defaults["feats"].query  # it cannot encode texts
    assert ctx.resolve(feats, "objectives", first.objectives) == feats.objectives  # all stays all
    assert ctx.resolve(feats, "query_class", first.query_class) == ""  # never another text's class
    assert ctx.resolve(feats, "objective", "ce") == "ce"  # a value the caller chose is theirs


def test_a_class_belongs_to_the_text_it_was_stated_for():
    assert stated_for("a red star", "red star") == "a red star" and stated_for("a red star", "") is None
    assert class_for("red star", "a red star", "a red star") == "red star"
    assert class_for("red star", "two hearts", "a red star") == ""  # pasted over: not this text's class
    assert class_for("red star", "anything", None) == "red star"  # an API call's class is its own


def test_page_numbers_are_whole_and_from_one():
    assert [page_number(p) for p in (3, 2.7, 0, -4, None, "2", float("nan"), 2**70, True)] == [
        3,
        2,
        1,
        1,
        1,
        1,
        1,
        1,
        1,
    ]
    assert step_page(1, -1) == 1 and step_page(4, 1) == 5 and given(" ") is False and given(0) is True


GRADIO = f"gradio {gr.__version__}"  # named in every canary's failure: the upgrade that moved an internal


def test_the_blocks_hooks_are_where_the_adapter_overrides_them():
    """ServedBlocks overrides preprocess_data and process_api and sets state_session_capacity (a launch option the
    mounted app reads): a gradio upgrade that moves any of them fails here."""
    params = list(inspect.signature(gr.Blocks.preprocess_data).parameters)
    assert params[:3] == ["self", "block_fn", "inputs"], (GRADIO, params)
    assert inspect.iscoroutinefunction(gr.Blocks.preprocess_data), GRADIO
    assert list(inspect.signature(gr.Blocks.process_api).parameters)[:2] == ["self", "block_fn"], GRADIO
    assert "state_session_capacity" in inspect.signature(gr.Blocks.launch).parameters, GRADIO
    with gradio_adapter.ServedBlocks(sessions=7, opens=lambda path: path == "/ok") as blocks:
        gr.Textbox()
    assert blocks.state_session_capacity == 7 and blocks.opens("/ok") and not blocks.opens("/etc/passwd"), GRADIO
    paths = list(blocks_module.file_paths([{"path": "/a"}, {"x": [{"path": 3}]}, "path"]))
    assert sorted(map(str, paths)) == ["/a", "3"]
    assert gr.validate(False, "no")["__type__"] == "validate" and gr.skip() == {"__type__": "update"}, GRADIO


def test_the_page_root_is_what_gradio_passes_its_events():
    """Result pictures are sent as URLs under the root gradio computes for each event (`page_root`): gradio's
    call_process_api passes it to process_api as `root_path`, and a handler run by ServedBlocks.process_api reads
    it (the context reaches gradio's worker thread); outside an event there is none."""
    import asyncio

    from gradio import route_utils
    from gradio.state_holder import SessionState
    assert "root_path" in inspect.signature(gr.Blocks.process_api).parameters, GRADIO
    assert "root_path=root_path" in inspect.getsource(route_utils.call_process_api), GRADIO
    with gradio_adapter.ServedBlocks() as blocks:
        out = gr.Textbox()
        gr.Button().click(lambda: gradio_adapter.page_root() or "none", None, out)
    answer = asyncio.run(blocks.process_api(block_fn=blocks.fns[0], inputs=[], state=SessionState(blocks),
                                            root_path="http://host:1/app/"))
    assert answer["data"] == ["http://host:1/app"], GRADIO
    assert gradio_adapter.page_root() is None


def test_the_fair_queue_is_built_where_gradio_builds_its_queue():
    """Blocks.queue builds its queue into `_queue` from the arguments ServedBlocks.queue passes on; the FairQueue is
    built in its place from the same settings (no class swapped on a live object)."""
    from gradio import queueing
    params = inspect.signature(queueing.Queue.__init__).parameters
    assert {"live_updates", "concurrency_count", "update_intervals", "max_size", "blocks",
            "default_concurrency_limit"} <= set(params), (GRADIO, list(params))
    share = gradio_adapter.OwnQueue(1, 2, 3, "c", "n", "a")
    with gradio_adapter.ServedBlocks() as blocks:
        gr.Button().click(lambda: None, None, None, concurrency_id="lab")
    blocks.queue(default_concurrency_limit=4, max_size=9, api_open=False, own={"lab": share},
                 client_of=lambda request: "x")
    q = blocks._queue
    assert type(q) is gradio_adapter.FairQueue and q.blocks is blocks, GRADIO
    with gr.Blocks() as plain:  # gradio's own queue from the same settings: the FairQueue must match it
        gr.Button()
    plain.queue(default_concurrency_limit=4, max_size=9, api_open=False)
    for setting in ("live_updates", "max_thread_count", "update_intervals", "default_concurrency_limit"):
        assert getattr(q, setting) == getattr(plain._queue, setting), (GRADIO, setting)
    assert list(inspect.signature(gr.Blocks.queue).parameters) == \
        ["self", "status_update_rate", "api_open", "max_size", "default_concurrency_limit"], GRADIO
    assert q.max_size is None and q.shared_max == 9 and q.own == {"lab": share}, GRADIO
    assert q.default_concurrency_limit == 4 and blocks.api_open is False, GRADIO
    assert q._over(share, "lab", "x") is None, GRADIO  # nothing held yet: the first run fits


def test_the_file_registries_are_where_the_upload_store_reads_them(tmp_path):
    """GradioFiles reads the Blocks' upload set, per-component file sets and kept files; example pictures are read
    from gr.Examples' dataset and its click event followed."""
    from cmr_demo.ui.gradio_adapter import files
    registry = gradio_adapter.GradioFiles()
    assert registry.uploaded() == set() and registry.sets() == [] and registry.kept() == set()
    picture = tmp_path / "p.png"
    from PIL import Image
    Image.new("RGB", (4, 4)).save(picture)
    with gradio_adapter.ServedBlocks(files=registry) as blocks:
        image = gr.Image(type="filepath")
        examples = gr.Examples([[str(picture)]], inputs=[image])
    assert registry.blocks is blocks, GRADIO
    assert isinstance(registry.uploaded(), set) and isinstance(registry.sets(), list), GRADIO
    assert isinstance(registry.kept(), set), GRADIO
    cached = files.example_pictures(examples)
    assert len(cached) == 1 and cached[0] and cached[0].startswith(files.cache_folder()), (GRADIO, cached)
    assert hasattr(files.example_click(examples), "then"), GRADIO
    registry.sets().append({"/handed/out"}) if not registry.sets() else registry.sets()[0].add("/handed/out")
    assert registry.handed_out("/handed/out"), GRADIO


def test_the_routes_the_middleware_checks_are_gradios():
    """The paths GradioRoutes checks are gradio's own routes, and its event checks read the Blocks' events."""
    from gradio.routes import App
    with gr.Blocks() as blocks:
        gr.Button().click(lambda: None, None, None, api_name="go")
    paths, stack = set(), list(App.create_app(blocks).routes)
    while stack:  # gradio includes its API as a router of its own
        route = stack.pop()
        paths.add(getattr(route, "path", ""))
        stack.extend(getattr(getattr(route, "original_router", None), "routes", []))
    for path in (
        "/gradio_api/queue/join",
        "/gradio_api/queue/data",
        "/gradio_api/upload",
        "/gradio_api/call/{api_name}",
        "/gradio_api/call/v2/{api_name}",
        "/gradio_api/call/{api_name}/{event_id}",
        "/gradio_api/run/{api_name}",
        "/gradio_api/api/{api_name}",
    ):
        assert path in paths, (GRADIO, path, sorted(paths))
    routes = gradio_adapter.GradioRoutes(blocks)
    assert routes.is_upload("/gradio_api/upload") and routes.is_event("/gradio_api/queue/join")
    assert routes.is_stream("/gradio_api/queue/data") and not routes.is_event("/api/v1/search")
    assert routes.event_problem("/gradio_api/call/go", b'{"data": []}') is None
    assert "no endpoint is named" in routes.event_problem("/gradio_api/call/nope", b'{"data": []}')
    assert "no event has the index" in routes.event_problem("/gradio_api/queue/join", b'{"fn_index": 99}')
    assert "no event stream" in routes.stream_problem("/gradio_api/queue/data", "session_hash=abc")


def test_the_queue_internals_the_adapter_reads_are_where_it_reads_them():
    """Streams and withdraw read gradio's queue (its sessions, events and their waiting lists) and the app closes
    gradio's monitoring routes through mount_gradio_app: a gradio upgrade that moves any of them fails here."""
    from gradio import queueing
    from gradio.routes import mount_gradio_app
    with gr.Blocks() as blocks:
        gr.Button().click(lambda: None, None, None, concurrency_id="lab")
    blocks.queue(api_open=False)
    q = blocks._queue
    assert all(isinstance(getattr(q, name), dict) for name in
               ("pending_messages_per_session", "event_ids_to_events", "pending_event_ids_session",
                "event_queue_per_concurrency_id"))
    assert inspect.iscoroutinefunction(q.remove_from_queue) and isinstance(q.active_jobs, list), GRADIO
    assert list(inspect.signature(q.push).parameters) == ["body", "request", "username"], GRADIO
    assert list(inspect.signature(queueing.Event).parameters)[:3] == ["session_hash", "fn", "request"], GRADIO
    event = queueing.Event("s1", blocks.fns[0], None, None)
    assert event.fn is blocks.fns[0] and event.session_hash == "s1" and isinstance(event._id, str), GRADIO
    assert event.concurrency_id == "lab" and isinstance(event.fn.outputs, list), GRADIO
    streams = gradio_adapter.Streams(blocks)
    assert not streams.has_session("s1") and not streams.has_event(event._id)
    q.pending_messages_per_session["s1"] = object()
    q.event_ids_to_events[event._id] = event
    assert streams.has_session("s1") and streams.has_event(event._id)
    assert "enable_monitoring" in inspect.signature(mount_gradio_app).parameters, GRADIO
