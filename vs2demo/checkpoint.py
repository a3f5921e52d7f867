"""What a checkpoint says of itself, read without torch or transformers: where it is, its config.json,
the frame budget it declares, whether it is the project's toy, its vision geometry and its revision.

Both backends read these: the transformers one before it loads the model, the vLLM one (an HTTP
client, which must not import torch) of the model its server serves, and a batch job before any
model is loaded (`backends.frame_budget`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .errors import ModelLoadError
from .settings import VIDEO_MAX_PIXELS, VIDEO_MIN_PIXELS

# `--model toy`: the small offline model shipped in assets/toy (built by `python -m tools.toy`).
SHIPPED_TOY = Path(__file__).resolve().parents[1] / "assets" / "toy"
REFERENCE_GEOMETRY = (14, 2, 2)  # Qwen2.5-VL's patch size, spatial merge and temporal patch


def model_source(model: str) -> str:
    """Where `model` is loaded from: "toy" names the shipped toy; anything else is a hub id or a folder."""
    return str(SHIPPED_TOY) if model == "toy" else model


def looks_like_a_folder(model: str) -> bool:
    return model.startswith(("/", "./", "../", "~")) or Path(model).exists() or model.count("/") != 1


def cached_file(model: str, name: str) -> Path | None:
    """A file of a hub model in this machine's Hugging Face cache (never fetched), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(model, name)
    except ValueError:  # not a hub id
        return None
    return Path(found) if isinstance(found, str) else None


def read_config(model: str) -> dict | None:
    """The checkpoint's config.json: a folder's, or a hub model's from the local cache; None when this
    machine has neither (nothing is downloaded). ModelLoadError when a folder's cannot be read."""
    source = model_source(model)
    folder = Path(source).expanduser()
    path = folder / "config.json" if folder.is_dir() else cached_file(source, "config.json")
    if path is None:
        return None
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"The folder {source!r} holds no readable model config: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"The config of {source!r} is not a JSON object.")
    return config


def frame_pixels(settings, config: dict | None) -> tuple[int, int]:
    """(min, max) pixels a frame for this model: the settings' when given, else what the checkpoint
    declares for itself (the toy's frames are tiny), else the reference's."""
    declared = (config or {}).get("vs2demo_frame_pixels") or {}
    return (settings.min_pixels or declared.get("min_pixels", VIDEO_MIN_PIXELS),
            settings.max_pixels or declared.get("max_pixels", VIDEO_MAX_PIXELS))


def is_toy(config: dict | None) -> bool:
    """Whether the checkpoint says it is the project's toy (the app then says its scores mean nothing)."""
    return bool((config or {}).get("vs2demo_toy", False))


def vision_geometry(config: dict | None) -> tuple[int, int, int]:
    """(patch size, spatial merge, temporal patch) of the vision tower: how many tokens a video makes."""
    vision = (config or {}).get("vision_config") or {}
    if not all(name in vision for name in ("patch_size", "spatial_merge_size", "temporal_patch_size")):
        return REFERENCE_GEOMETRY
    return vision["patch_size"], vision["spatial_merge_size"], vision["temporal_patch_size"]


def model_revision(model: str) -> str:
    """What exactly was loaded, for a record's key: the hub commit of a cached hub model, else a hash
    of a local folder's files (names and contents), so that a rebuilt or fine-tuned checkpoint in the
    same folder does not reuse another's records. "unknown" for a hub model not in the cache."""
    source = model_source(model)
    folder = Path(source).expanduser()
    if folder.is_dir():
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            digest.update(str(path.relative_to(folder)).encode() + b"\0")
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        return "sha256:" + digest.hexdigest()[:16]
    config_file = cached_file(source, "config.json")
    parts = config_file.parts if config_file is not None else ()
    # The hub cache keeps files under .../snapshots/<commit>/
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else "unknown"
