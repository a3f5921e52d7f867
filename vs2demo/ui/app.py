"""The app: a header with the model's status (and the toy banner), six tabs, the API endpoints."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from . import about, api, batch, best_of_n, compare, evaluate, explore, files, labelling, server
from .controls import ASSETS
from .render import STYLESHEET, status_html, toy_banner
from ..explore import MAX_RECORDS
from ..scoring import Scorer
from ..settings import ServerLimits, labelling_on, server_limits_from_env

HEADER = """# VideoScore2 explorer
Watch [VideoScore2](https://huggingface.co/TIGER-Lab/VideoScore2) judge AI-generated videos: its reasoning
as it is written, its scores for visual quality, text alignment and physical consistency, and how sure it was."""

MAX_UPLOAD = "500mb"
QUEUE_SIZE = 32


def model_status(scorer: Scorer) -> tuple[str, str]:
    model = scorer.status()
    if model.state == "loading":
        return "loading", f"⏳ Loading {model.model} ({model.quant})… {model.loading_s:.0f} s. You can prepare your videos meanwhile."
    if model.state == "failed":
        return "failed", f"✖ The model could not be loaded: {model.error}"
    info = model.info
    name = "The toy model" if info.is_toy else info.model
    if info.backend == "vllm":
        return "ready", f"✔ {name} ready, served by vLLM."
    # "4bit on cuda", but "float32 on cpu" rather than "none on cpu" for weights not quantized.
    weights = info.dtype if info.quant == "none" else info.quant.replace("bit", "-bit")
    return "ready", f"✔ {name} ready ({weights} on {info.device}, loaded in {info.load_s:.0f} s)."


def store_for_explore(scorer: Scorer):
    """The Explore tab's "load this app's results store": its newest records and their size, or None
    where it must not be offered. The store holds every visitor's prompts and rationales, so it is
    offered only where it is shared (settings.store_shared: one person's app, or the operator's
    choice)."""
    if scorer.store is None or not scorer.store_shared:
        return None
    return lambda: (list(scorer.store.records(limit=MAX_RECORDS)), scorer.store.size_bytes(limit=MAX_RECORDS))


def build_app(scorer: Scorer, videos_dir: str | None = None, labelling_allowed: bool | None = None) -> gr.Blocks:
    """The page and the API around the scorer's functions: no tab sees the model or the scorer.
    `videos_dir`: a folder whose videos the Explore tab may show (the records name them);
    `labelling_allowed`: whether people may label (None: settings.labelling, as on 127.0.0.1)."""
    settings = scorer.settings
    allowed = labelling_on(settings.labelling) if labelling_allowed is None else labelling_allowed
    desk = labelling.desk_for(scorer.store, scorer.store_shared, settings.max_labels, allowed)
    files.use_own_upload_folder()  # before the Blocks exist: they note where uploads go
    server.use_streamed_diff()  # Gradio's diff garbles a streamed list of records (see there)
    # Files Gradio made for this run older than an hour go every half hour (server.lifespan sweeps
    # what earlier runs left, and the downloads).
    with gr.Blocks(title="VideoScore2 explorer", delete_cache=(files.SWEEP_EVERY_S, files.MAX_AGE_S)) as demo:
        gr.Markdown(HEADER)
        banner = gr.HTML(toy_banner(scorer.fallback_reason), visible=scorer.is_toy, elem_id="toy-banner")
        state, message = model_status(scorer)
        status = gr.HTML(status_html(state, message), elem_id="model-status")
        with gr.Tabs(overflow_behavior="wrap"):  # a phone shows every tab, on two rows, not two and a "..." menu
            evaluate.build(scorer.score, settings.options, desk, settings.backend)
            compare.build(scorer.score_many, settings.options, desk)
            best_of_n.build(scorer.score_many, scorer.status, settings.options)
            batch.build(scorer.score_many, scorer.status, settings.options, settings.max_batch)
            sets = explore.build(store_for_explore(scorer), videos_dir, settings.options, settings.explore_mb * 2**20,
                                 desk)
            about.build(scorer.status, settings)
        if desk:  # who labels, kept in each browser: its own labels again after a reload or a restart
            labelling.remember_browsers(demo, desk)
        api.register(scorer.score, scorer.score_many, settings.options, settings.max_batch)

        # Poll the loading model until it is ready (or failed), then stop polling.
        timer = gr.Timer(1.0, active=scorer.state == "loading")

        def refresh():
            state, message = model_status(scorer)
            banner_update = gr.update(value=toy_banner(scorer.fallback_reason), visible=scorer.is_toy)
            return banner_update, status_html(state, message), gr.Timer(active=state == "loading")

        # A closed page lets go of what its Explore tab held (Gradio keeps session state an hour more).
        def let_go(request: gr.Request):
            sets.end_session(request.session_hash or "")

        demo.unload(let_go)
        timer.tick(refresh, outputs=[banner, status, timer], api_visibility="private", queue=False)
        demo.load(refresh, outputs=[banner, status, timer], api_visibility="private", queue=False)
    return demo


def launch(demo: gr.Blocks, host: str | None = None, port: int | None = None, share: bool = False,
           videos_dir: str | None = None, limits: ServerLimits | None = None, **kwargs):
    """One model, one GPU: model events take turns for it, and at most QUEUE_SIZE more wait in
    Gradio's queue (each sees its place). Request bodies, each client's model requests and the room
    for uploads are bounded (`limits`, by default from the environment), and cancels stop the work
    (server.RequestGuard); old files are swept at start-up and on a schedule (server.lifespan)."""
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    limits = server_limits_from_env() if limits is None else limits
    app_kwargs = {"middleware": [Middleware(server.RequestGuard, limits=limits)], "lifespan": server.lifespan}
    # The example clips live in assets/, which Gradio serves only when told (the app may run from
    # another working directory); so does the Explore tab's --videos folder, which its owner named
    # for showing.
    allowed = [str(ASSETS)] + ([str(Path(videos_dir).resolve())] if videos_dir else [])
    return demo.launch(server_name=host, server_port=port, share=share, max_file_size=MAX_UPLOAD,
                       allowed_paths=allowed, css_paths=[STYLESHEET], theme=gr.themes.Soft(), app_kwargs=app_kwargs,
                       **kwargs)
