"""The Objective lab tab: train a pair of heads live on the bundle's own features, its curve drawn as it trains; the
run joins this session's Compare, leaderboard and maps. Its handler is `/lab_train`."""
from __future__ import annotations

from concurrent.futures import wait
from dataclasses import replace

import gradio as gr

from cmr_demo.serve import lab
from cmr_demo.serve.inputs import InputError
from cmr_demo.serve.service import RetrievalService
from cmr_demo.ui import browser, plots, views
from cmr_demo.serve.schema import LabAnswer
from cmr_demo.ui.context import Context, session_of
from cmr_demo.ui.errors import user_errors
from cmr_demo.ui.gradio_adapter import OwnQueue
from cmr_demo.ui.pager import QUIET

LAB_ID = "lab"  # the lab's concurrency id: its runs' queue of its own
LAB_LIMIT = 1  # lab runs training at once (2 cores): the others wait in the lab's queue, their position shown
# the lab's own queue (gradio_adapter.FairQueue): runs are minutes of CPU, so one client may hold two (one training,
# one waiting), one network four (a client may hold many addresses) and everyone eight; searches never wait behind
# them nor find the shared queue full because of them
LAB_QUEUE = OwnQueue(
    per_client=2, per_network=4, in_all=8,
    busy_client="you already have 2 lab runs waiting or training: wait for one to finish (or press Stop) before "
                "starting another",
    busy_network="your network already has 4 lab runs waiting or training: wait for one to finish before starting "
                 "another",
    busy_all="the lab is busy: 8 runs are waiting or training. Try again in a few minutes (searches are not "
             "affected)")
INTRO = ("Train one pair of heads **live** on this bundle's own features: any objective (or a hybrid like "
         "`pcl+0.5*tl`), its options, the share of training pairs that keep their text or image (the paper's "
         "modality-imbalance setting), a seed and the hyper-parameters. The boxes start at the bundle's own settings, "
         "which reproduce its stored metrics. The run joins Compare, the leaderboard and the maps **for you only** "
         "(the bundle is not changed); runs train one at a time for everyone, each for at most "
         f"{lab.MAX_SECONDS:.0f} s, and you may have {LAB_QUEUE.per_client} waiting or training.")


def _finish(ctx: Context, job: lab.LabJob):
    try:
        return lab.finish(ctx.lab_runs, job)
    except lab.LabFailure as err:
        raise gr.Error(str(err)) from None


class LabTab:
    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.demo: gr.Blocks | None = None  # the Blocks, set by `wire`: Stop takes waiting runs out of its queue

    def _start(self, asked: lab.LabSettings, bundle, request) -> lab.LabJob:
        base = self.ctx.base(bundle)  # a run trains on the bundle, whatever the session holds
        asked = replace(asked, seed=self.ctx.resolve(base, "seed", asked.seed))
        return lab.start(self.ctx.lab_runs, base, session_of(request), asked)

    @user_errors
    def lab_train(self, objective: str, options: str = "", text_fraction: float = 1.0, image_fraction: float = 1.0,
                  seed: int = 0, bundle: str = "", request: gr.Request = None) -> dict:
        """Train heads live on the bundle's own features: `objective` (a registry name or a hybrid like
        'pcl+0.5*tl'), `options` like 'margin=0.3,temperature=0.5' ("" = defaults), the modality-imbalance fractions
        in (0, 1], a seed; everything else as the bundle's run. Returns the run's test metrics (i2t_map, t2i_map,
        avg_map, epochs, seconds, ...); it joins this session's compare/leaderboard/maps."""
        job = self._start(lab.LabSettings(objective, options, text_fraction, image_fraction, seed), bundle, request)
        run = _finish(self.ctx, job)  # waits: a sync call gradio cannot interrupt; the lab's time cap bounds it
        return LabAnswer.of(run, job.base.bundle.manifest["objectives"].get(run.objective)).to_json()

    @user_errors
    def lab_page(self, objective, options, text_fraction, image_fraction, seed, lr, batch_size, epochs, patience,
                 embed_dim, hidden_dim, bundle, request: gr.Request = None, progress=gr.Progress()):
        """The tab's run: the curve and progress live, then the result."""
        job = self._start(lab.LabSettings(objective, options, text_fraction, image_fraction, seed, lr, batch_size,
                                          epochs, patience, embed_dim, hidden_dim), bundle, request)
        stored = job.base.bundle.objectives.get(lab.check_objective(objective))
        reference = (stored.metrics.get("val") or {}).get("avg_map") if stored is not None else None  # same split
        try:
            while job.running():
                wait([job.future], timeout=0.5)
                if not job.history:
                    progress(None, desc="waiting for the lab (one run trains at a time)")
                    continue
                # no fraction of the epoch cap: early stopping ends most runs far below it ("54/500" read as 11 %)
                progress(None, desc=f"epoch {len(job.history)} · stops once the validation mAP stops improving "
                         f"(at most {job.epochs} epochs or {lab.MAX_SECONDS:.0f} s)")
                yield plots.lab_figure(job.history, "training…", reference), \
                    f"training · epoch {len(job.history)} · loss {job.history[-1]['loss']:.4f}"
        finally:  # the page went away or the event was cancelled: stop the run instead of training for no one
            if job.running():
                job.stop.set()
        run = _finish(self.ctx, job)
        answer = LabAnswer.of(run, job.base.bundle.manifest["objectives"].get(run.objective)).to_json()
        yield plots.lab_figure(job.history, answer["name"], reference), views.lab_markdown(answer)

    async def lab_stop(self, request: gr.Request = None):
        """Stop this session's lab run within one batch, keeping its best epoch so far, and take its runs still
        waiting for their turn out of the lab's queue."""
        session = session_of(request)
        withdrawn = await self.demo.withdraw(LAB_ID, session)
        training = self.ctx.lab_runs.stop(session)
        if withdrawn:
            runs = "runs were" if withdrawn > 1 else "run was"
            return f"**Stopped**: your waiting {runs} taken out of the lab's queue" + \
                ("; the one training stops within one batch, keeping its best epoch" if training else "")
        return "**Stopping** within one batch, keeping the best epoch so far…" if training else gr.skip()

    def defaults_for(self, objective: str, bundle: str):
        """The boxes follow the objective picked; a name being typed (not an objective yet) changes nothing: Train
        says what is wrong with it."""
        try:
            boxes = lab.Boxes.of(self.ctx.base(bundle).bundle, objective)
        except InputError:
            return (gr.skip(),) * 8
        return *boxes.values()[:-1], gr.Textbox(placeholder=boxes.options_hint)

    def build(self) -> None:
        first = self.ctx.first
        gr.Markdown(INTRO, elem_id="lab-intro")
        start = lab.Boxes.of(first.bundle, first.best) if lab.has_lab(first.bundle) and \
            first.bundle.objectives[first.best].trained else None
        with gr.Row():
            self.objective = gr.Dropdown(list(lab.OBJECTIVES) + ["pcl+0.5*tl"], value=start and first.best,
                                         allow_custom_value=True, label="Objective (or a hybrid like pcl+0.5*tl)",
                                         elem_id="lab-objective")
            self.options = gr.Textbox("", label="Options (KEY=VALUE, comma-separated; empty = the bundle's own)",
                                      placeholder=start.options_hint if start else "", elem_id="lab-options")
            self.seed = gr.Number(start.seed if start else 0, precision=0, label="seed", minimum=0)
        with gr.Row():
            self.text = gr.Slider(0.05, 1, value=1, step=0.05, label="share of training pairs that keep their text")
            self.image = gr.Slider(0.05, 1, value=1, step=0.05, label="share of training pairs that keep their image")
        with gr.Accordion("Hyper-parameters (the bundle's own settings for this objective)", open=False):
            with gr.Row():
                self.lr = gr.Number(start.lr if start else 1e-4, label="learning rate")
                self.batch = gr.Number(start.batch_size if start else 300, precision=0, label="batch size")
                self.epochs = gr.Number(start.epochs if start else 500, precision=0, label="max epochs")
                self.patience = gr.Number(start.patience if start else 10, precision=0, label="patience (epochs)")
                self.embed = gr.Number(start.embed_dim if start else 256, precision=0, label="embedding dim")
                self.hidden = gr.Number(start.hidden_dim if start else 256, precision=0, label="hidden dim")
        with gr.Row():
            self.btn = gr.Button("Train", variant="primary", elem_id="lab-train-btn")
            self.stop_btn = gr.Button("Stop (keep the best epoch so far)", elem_id="lab-stop-btn")
        self.plot = gr.Plot(label="training loss and validation mAP per epoch", elem_id="lab-plot")
        self.result = gr.Markdown(elem_id="lab-result")
        self.json = gr.JSON(visible=False)
        self.api_btn = gr.Button(visible=False)

    def wire(self, bundle_pick, refresh, lists_objectives, demo: gr.Blocks) -> None:
        self.demo = demo
        inputs = [self.objective, self.options, self.text, self.image, self.seed, self.lr, self.batch, self.epochs,
                  self.patience, self.embed, self.hidden, bundle_pick]
        self.objective.change(self.defaults_for, [self.objective, bundle_pick],
                              [self.lr, self.batch, self.epochs, self.patience, self.embed, self.hidden, self.seed,
                               self.options], **QUIET)
        self.stop_btn.click(self.lab_stop, None, self.result, queue=False, **QUIET)
        self.api_btn.click(
            self.lab_train,
            [self.objective, self.options, self.text, self.image, self.seed, bundle_pick],
            self.json,
            api_name="lab_train",
            preprocess=False,
            concurrency_id=LAB_ID,
            concurrency_limit=LAB_LIMIT,
        )
        # the curve and the progress come into view as the run starts (on a laptop the plot began below the fold)
        self.btn.click(lambda: (None, ""), None, [self.plot, self.result], js=browser.scroll_to("lab-plot"),
                       queue=False, **QUIET).then(
            self.lab_page, inputs, [self.plot, self.result], api_visibility="private", preprocess=False,
            concurrency_id=LAB_ID, concurrency_limit=LAB_LIMIT).success(
            refresh, bundle_pick, lists_objectives, **QUIET)

    def reset(self, s: RetrievalService) -> dict:
        return {self.objective: s.best, self.options: "", self.text: 1, self.image: 1, self.plot: None,
                self.result: "" if lab.has_lab(s.bundle) else
                f"⚠️ bundle '{s.name}' has no lab features (built before the lab)"}
