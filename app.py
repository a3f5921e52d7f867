"""vs2demo: `python app.py` starts the VideoScore2 explorer (also the Hugging Face Space entry point).

Flags override environment variables (VS2_MODEL, VS2_QUANT, VS2_DEVICE, ...), which a Space sets.
"""

import spaces  # noqa: F401  first: ZeroGPU must patch CUDA before torch is imported

import argparse
import logging
import os
import sys
from dataclasses import replace

from vs2demo.errors import UserInputError
from vs2demo.settings import (
    BACKENDS, DEFAULT_MAX_FRAMES, DEVICES, LABELLING, QUANT_MODES, SHARE_STORE, environment, labelling_on,
    server_limits_from_env, settings_from_env, store_shared,
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The VideoScore2 explorer: a Gradio app.")
    parser.add_argument("--model", help="hub id or local folder (default TIGER-Lab/VideoScore2; env VS2_MODEL)")
    parser.add_argument("--quant", choices=QUANT_MODES, help="4bit (default), 8bit or none (env VS2_QUANT)")
    parser.add_argument("--device", choices=DEVICES, help="auto (default), cuda or cpu (env VS2_DEVICE)")
    parser.add_argument("--backend", choices=BACKENDS, help="transformers (default: the model in this process) or vllm "
                        "(a vLLM server generates; env VS2_BACKEND)")
    parser.add_argument("--vllm-url", metavar="URL", help="with --backend vllm: the server, e.g. http://127.0.0.1:8000 "
                        "(env VS2_VLLM_URL)")
    parser.add_argument("--vllm-label", metavar="NAME", help="with --backend vllm: a name for how the server runs the "
                        "model, kept in each record and its key (env VS2_VLLM_LABEL)")
    parser.add_argument("--max-frames", type=int, help=f"default max frames per video ({DEFAULT_MAX_FRAMES}; env VS2_MAX_FRAMES)")
    parser.add_argument("--max-batch", type=int, help="most videos in one Batch request, page or API (32; env VS2_MAX_BATCH)")
    parser.add_argument("--store", help="results store file (default: VS2_STORE, else /data on a Space with "
                        "persistent storage, else ~/.cache/vs2demo/results.sqlite3)")
    parser.add_argument("--no-store", action="store_true", help="keep no records and serve none (or VS2_STORE=off)")
    parser.add_argument("--share-store", choices=SHARE_STORE, help="whether all who reach the app share the results "
                        "store: Explore may load it whole, and one person's records are served to another. auto "
                        "(default): only when the app listens on this machine alone, with no --share, not on a Space "
                        "(env VS2_SHARE_STORE)")
    parser.add_argument("--explore-mb", type=int, help="records the Explore tab holds for all visitors together, in MiB "
                        "of the files read (256; env VS2_EXPLORE_MB): the least recently used go first")
    parser.add_argument("--labelling", choices=LABELLING, help="whether people may label videos in the app (Explore, "
                        "Evaluate, Compare), kept in the results store. auto (default): as --share-store's auto "
                        "(env VS2_LABELLING)")
    parser.add_argument("--max-labels", type=int, metavar="N", help="labels one session may keep in the store "
                        "(10000; env VS2_MAX_LABELS)")
    parser.add_argument("--videos", metavar="FOLDER", help="videos the Explore tab may show beside their records "
                        "(found by file name; env VS2_VIDEOS)")
    parser.add_argument("--max-requests-per-client", type=int, metavar="N", help="model requests one address may "
                        "have waiting or running at once (4; env VS2_MAX_REQUESTS_PER_CLIENT)")
    parser.add_argument("--proxy-hops", type=int, metavar="N", help="proxies of other machines in front of the app "
                        "that append to X-Forwarded-For (1 on a Hugging Face Space, else 0; env VS2_PROXY_HOPS)")
    parser.add_argument("--uploads-max-gb", type=float, metavar="GB", help="room for all uploads together; the "
                        "oldest unused go first when it is full (5; env VS2_UPLOADS_MAX_GB)")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1; env GRADIO_SERVER_NAME)")
    parser.add_argument("--port", type=int, help="port (default 7860; env GRADIO_SERVER_PORT)")
    parser.add_argument("--share", action="store_true", help="also serve through a public gradio.live link")
    return parser.parse_args(argv)


def configure_logging() -> None:
    """The app's own messages (a refused request, a cancel, a sweep of old files) one line each at
    INFO; other libraries' from WARNING up."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("vs2demo").setLevel(logging.INFO)


def main(argv=None) -> int:
    args = parse_args(argv)
    configure_logging()
    try:
        settings = settings_from_env(model=args.model, quant=args.quant, device=args.device, backend=args.backend,
                                     vllm_url=args.vllm_url, vllm_label=args.vllm_label, max_frames=args.max_frames,
                                     max_batch=args.max_batch, share_store=args.share_store,
                                     explore_mb=args.explore_mb, labelling=args.labelling,
                                     max_labels=args.max_labels)
        limits = server_limits_from_env(max_requests_per_client=args.max_requests_per_client,
                                        proxy_hops=args.proxy_hops, uploads_max_gb=args.uploads_max_gb)
        from vs2demo.store import open_store

        store = open_store(args.store, enabled=not args.no_store)
    except UserInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from vs2demo.scoring import ON_ZERO_GPU, Scorer
    from vs2demo.ui.app import build_app, launch

    # Where the model asked for cannot run here (no GPU; not downloaded and no Hub), the page comes
    # up on the shipped toy and says why, rather than on a dead end.
    toy = replace(settings, model="toy", quant="none", device="cpu", backend="transformers", vllm_label=None,
                  min_pixels=None, max_pixels=None)
    scorer = Scorer(settings, store=store, fallback=toy)
    scorer.store_shared = store_shared(settings.share_store, args.host, args.share)
    videos = args.videos or environment().videos
    if videos and not os.path.isdir(videos):
        print(f"error: --videos {videos}: no such folder.", file=sys.stderr)
        return 2
    # On ZeroGPU the model must be loaded in the main process before launch. Elsewhere the page comes
    # up first and the model (with torch and transformers, seconds of imports that would contend
    # with the page's for the GIL) loads after, behind a visible status.
    if ON_ZERO_GPU:
        scorer.start_loading(background=False)
    demo = build_app(scorer, videos_dir=videos,
                     labelling_allowed=labelling_on(settings.labelling, args.host, args.share))
    launch(demo, host=args.host, port=args.port, share=args.share, videos_dir=videos, limits=limits,
           prevent_thread_lock=True)
    scorer.start_loading(background=True)  # nothing to do where it has loaded already
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
