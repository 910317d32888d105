"""The page's policy, without a browser: which bundle a request means, defaults per bundle, whose class a stated class
is, page arithmetic; and the one adapter over gradio's internals, checked against the installed gradio."""
import inspect

import gradio as gr
import pytest

from cmr_demo.serve.service import RetrievalService
from cmr_demo.bundle.load import load_bundle
from cmr_demo.ui.context import Context, class_for, given, page_number, stated_for, step_page
from cmr_demo.ui import gradio_adapter


@pytest.fixture(scope="module")
def ctx(small_bundle, features_bundle):
    return Context({"small": RetrievalService(load_bundle(small_bundle), "small"),
                    "feats": RetrievalService(load_bundle(features_bundle), "feats")})


def test_the_first_bundle_is_the_default_and_unknown_names_are_refused(ctx):
    assert ctx.service(None).name == "small" and ctx.service("").name == "small" and ctx.service("feats").name == "feats"
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
    assert [page_number(p) for p in (3, 2.7, 0, -4, None, "2", float("nan"), 2 ** 70, True)] == [3, 2, 1, 1, 1, 1, 1, 1, 1]
    assert step_page(1, -1) == 1 and step_page(4, 1) == 5 and given(" ") is False and given(0) is True


def test_the_adapter_matches_the_installed_gradio():
    """What the adapter relies on: a failure here means a gradio upgrade moved it (update the adapter)."""
    params = list(inspect.signature(gr.Blocks.preprocess_data).parameters)
    assert params[:3] == ["self", "block_fn", "inputs"], params
    assert inspect.iscoroutinefunction(gr.Blocks.preprocess_data)
    with gr.Blocks() as blocks:
        gr.Textbox()
    assert isinstance(gradio_adapter.uploaded_files(blocks), set)
    assert isinstance(gradio_adapter.file_sets(blocks), list)
    gradio_adapter.limit_sessions(blocks, 7)
    assert blocks.state_session_capacity == 7
    assert "state_session_capacity" in inspect.signature(gr.Blocks.launch).parameters  # the launch option it stands for
    paths = list(gradio_adapter.file_paths([{"path": "/a"}, {"x": [{"path": 3}]}, "path"]))
    assert sorted(map(str, paths)) == ["/a", "3"]


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
    assert inspect.iscoroutinefunction(q.remove_from_queue) and callable(q.push)
    assert list(inspect.signature(queueing.Event).parameters)[:3] == ["session_hash", "fn", "request"]
    event = queueing.Event("s1", blocks.fns[0], None, None)
    assert event.fn is blocks.fns[0] and event.session_hash == "s1" and isinstance(event._id, str)
    streams = gradio_adapter.Streams(blocks)
    assert not streams.has_session("s1") and not streams.has_event(event._id)
    q.pending_messages_per_session["s1"] = object()
    q.event_ids_to_events[event._id] = event
    assert streams.has_session("s1") and streams.has_event(event._id)
    assert "enable_monitoring" in inspect.signature(mount_gradio_app).parameters
