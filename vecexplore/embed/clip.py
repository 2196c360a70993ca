"""Loading open_clip image encoders: by pretrained tag, local checkpoint, or random init.

``weights`` is one of:

* an open_clip pretrained tag for the model (``laion2b_s34b_b79k``): resolved from
  the Hugging Face cache (or open_clip's URL cache) first, then downloaded by
  open_clip only if the hub is reachable: offline, the failure is immediate;
* a path to a local checkpoint (``.pt``/``.pth``/``.bin`` state dict or
  ``.safetensors``) for the named architecture;
* ``random`` or ``random:SEED``: deterministic untrained weights.

Every failure is a :class:`~vecexplore.errors.WeightsError` naming the model, the
weights and what was tried. Model creation never changes torch's global RNG state.
The model's own eval transform is always the preprocessing used.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

from vecexplore.errors import ConfigError, WeightsError

log = logging.getLogger(__name__)

WeightsKind = Literal["pretrained", "file", "random"]
DEFAULT_MODEL = "ViT-B-32"
DEFAULT_WEIGHTS = "laion2b_s34b_b79k"
TINY_MODEL = "vecexplore-tiny-vit"
"""A 3.4 M-parameter ViT (64 px, 64-d) shipped with vecexplore for tests and offline demos."""

_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt", ".npz")
_UNREADABLE = ("UnpicklingError", "BadZipFile", "EOFError", "SafetensorError", "HeaderTooLarge")


@dataclass(frozen=True)
class LoadedModel:
    """An open_clip model ready to embed images.

    Attributes:
        model: the open_clip model, in eval mode, on ``device``.
        preprocess: the model's own eval transform, PIL RGB image → ``(3, H, W)`` float32.
        model_name: the open_clip architecture name.
        weights: the ``weights`` argument as given.
        weights_kind: ``"pretrained"`` (a tag), ``"file"`` or ``"random"``.
        weights_id: identity of the weights for cache keys: the tag, ``file:<blake2b>``
            of the checkpoint's content, or ``random:<seed>``.
        dim: embedding dimension D.
        device: the torch device string the model lives on ("cpu", "cuda:0", "mps").
        image_size: ``(H, W)`` of the tensors ``preprocess`` makes.
        source: the checkpoint file actually loaded, or None for random weights.
    """

    model: Any
    preprocess: Callable
    model_name: str
    weights: str
    weights_kind: WeightsKind
    weights_id: str
    dim: int
    device: str
    image_size: tuple[int, int]
    source: str | None

    @property
    def random(self) -> bool:
        """True when the weights are untrained: the map then shows no semantics."""
        return self.weights_kind == "random"

    def preprocess_signature(self) -> str:
        """A string that changes whenever preprocessing (transform or decoding) would."""
        from vecexplore.io.images import DECODE_VERSION

        return f"{self.preprocess!r}|{DECODE_VERSION}"

    def info(self) -> dict[str, Any]:
        """JSON-ready description for manifests: model, weights, kind, id, dim, device, random."""
        return {
            "model": self.model_name,
            "weights": self.weights,
            "weights_kind": self.weights_kind,
            "weights_id": self.weights_id,
            "dim": self.dim,
            "device": self.device,
            "random": self.random,
        }


def register_bundled_configs() -> None:
    """Make vecexplore's own small architectures known to open_clip (idempotent)."""
    import open_clip

    if TINY_MODEL not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_DIR)


def resolve_device(device: str) -> str:
    """``auto`` → cuda > mps > cpu; an explicit device must be available.

    Raises:
        ConfigError: an unknown device, or one this machine does not have.
    """
    import torch

    name = device.strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    kind = name.split(":", 1)[0]
    if kind == "cpu":
        return "cpu"
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine (torch {torch.__version__}); use --device auto or cpu")
        return name
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"--device {device}: Apple MPS is not available on this machine; use --device auto or cpu")
        return "mps"
    raise ConfigError(f"--device {device!r}: expected auto, cpu, cuda, cuda:N or mps")


def _check_model_name(model_name: str) -> None:
    import open_clip

    register_bundled_configs()
    known = open_clip.list_models()
    if model_name in known:
        return
    close = difflib.get_close_matches(model_name, known, n=5, cutoff=0.5)
    hint = f"; close matches: {', '.join(close)}" if close else f"; see open_clip.list_models() ({len(known)} architectures)"
    raise WeightsError(f"unknown open_clip model {model_name!r}{hint}")


def _hub_offline() -> bool:
    try:
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return True
    except ImportError:
        return True
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _reachable(url: str, timeout: float = 3.0) -> bool:
    """One TCP connect: huggingface_hub would otherwise retry for ~25 s per file."""
    parsed = urlparse(url)
    host = parsed.hostname or url
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cached_tag_file(cfg: dict) -> tuple[str | None, list[str]]:
    """The tag's checkpoint if already on disk, and the places looked at."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    looked: list[str] = []
    if cfg.get("file"):
        return cfg["file"], looked
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import constants, try_to_load_from_cache

        repo, filename = os.path.split(hub)
        names = [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME] if not filename else [filename]
        if filename.endswith((".bin", ".pth")):
            names.insert(0, filename[:-4] + ".safetensors")
        for name in names:
            hit = try_to_load_from_cache(repo, name, cache_dir=constants.HF_HUB_CACHE)
            if isinstance(hit, str) and os.path.isfile(hit):
                return hit, looked
        looked.append(f"the Hugging Face cache ({constants.HF_HUB_CACHE}) for {repo}")
    url = cfg.get("url", "")
    if url:
        target = os.path.join(os.path.expanduser("~/.cache/clip"), os.path.basename(url))
        if os.path.isfile(target):
            return target, looked
        looked.append(f"open_clip's download cache ({target})")
    return None, looked


def _resolve_tag(model_name: str, tag: str, cfg: dict) -> str:
    """Local path of the tag's checkpoint, downloading it only when the hub answers."""
    from open_clip.pretrained import download_pretrained

    found, looked = _cached_tag_file(cfg)
    if found:
        return found
    what = f"could not load open_clip weights {tag!r} for {model_name}"
    fix = "pass --weights PATH to a local checkpoint or --weights random"
    where = " and ".join(looked) or "the local caches"
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co") if cfg.get("hf_hub") else cfg.get("url", "")
    if _hub_offline():
        raise WeightsError(f"{what}: offline (HF_HUB_OFFLINE is set) and not in {where}; {fix}")
    if not _reachable(endpoint):
        raise WeightsError(f"{what}: no network ({endpoint} unreachable) and not in {where}; {fix}")
    log.info("downloading open_clip weights %r for %s", tag, model_name)
    try:
        return download_pretrained(cfg)
    except Exception as exc:
        raise WeightsError(f"{what}: download from {endpoint} failed ({type(exc).__name__}: {exc}); {fix}") from None


def _parse_weights(model_name: str, weights: str, seed: int) -> tuple[WeightsKind, str, str | None, dict]:
    """(kind, weights_id, checkpoint path or None, ``image_*`` preprocess overrides of a tag)."""
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    w = weights.strip()
    if w == "random" or w.startswith("random:"):
        if w != "random":
            try:
                seed = int(w.split(":", 1)[1])
            except ValueError:
                raise WeightsError(f"--weights {weights!r}: expected random or random:<integer seed>") from None
        return "random", f"random:{seed}", None, {}
    cfg = get_pretrained_cfg(model_name, w)
    if cfg:
        path = _resolve_tag(model_name, w, cfg)
        if cfg.get("quick_gelu") and not model_name.endswith("quickgelu"):
            log.warning("weights %r were trained with QuickGELU; open_clip suggests model %s-quickgelu", w, model_name)
        overrides = {
            f"image_{k}": cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if cfg.get(k) is not None
        }
        return "pretrained", w.lower().replace("-", "_"), path, overrides
    p = Path(w).expanduser()
    if p.is_file():
        from vecexplore.io.images import file_digest

        return "file", f"file:{file_digest(p)}", str(p), {}
    if p.exists():
        raise WeightsError(f"weights {w} for {model_name}: not a regular file")
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if os.sep in w or w.lower().endswith(_CHECKPOINT_SUFFIXES):
        raise WeightsError(f"weights file not found: {w} (for open_clip model {model_name})")
    known = f"its pretrained tags are: {', '.join(tags)}" if tags else "it has no pretrained tags in open_clip"
    raise WeightsError(
        f"unknown weights {w!r} for open_clip model {model_name}: not a file, not 'random', and not a "
        f"pretrained tag of this model ({known})"
    )


def load_clip(model_name: str, weights: str, *, device: str = "cpu", seed: int = 0) -> LoadedModel:
    """Create an open_clip model with the given weights and its eval preprocessing.

    Args:
        model_name: open_clip architecture ("ViT-B-32", :data:`TINY_MODEL`, …; see
            ``open_clip.list_models()``).
        weights: a pretrained tag, a checkpoint path, ``random`` or ``random:SEED``.
        device: ``auto``/``cpu``/``cuda``/``cuda:N``/``mps``.
        seed: seed of the random init when ``weights`` is ``random`` (local generator
            state: torch's global RNG is left as it was).

    Raises:
        WeightsError: unknown model, unknown tag, missing or unreadable file, wrong
            architecture for the file, or a tag that is neither cached nor downloadable.
        ConfigError: the device is not available.
    """
    _check_model_name(model_name)
    dev = resolve_device(device)
    kind, weights_id, path, overrides = _parse_weights(model_name, weights, seed)
    if kind == "random":
        seed = int(weights_id.split(":", 1)[1])
    import open_clip
    import torch

    try:
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(seed)
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name,
                pretrained=path,
                device="cpu",
                **overrides,
            )
    except Exception as exc:
        if kind == "random" or path is None:
            raise WeightsError(f"could not create open_clip model {model_name}: {type(exc).__name__}: {exc}") from None
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0][:200]
        if type(exc).__name__ in _UNREADABLE or isinstance(exc, OSError):
            raise WeightsError(
                f"checkpoint {path} is not a readable state dict for {model_name} (save one with "
                f"torch.save(model.state_dict(), path) or as .safetensors): {type(exc).__name__}: {detail}"
            ) from None
        raise WeightsError(
            f"checkpoint {path} does not fit open_clip model {model_name} (wrong architecture?): "
            f"{type(exc).__name__}: {detail}"
        ) from None
    model = model.to(dev).eval()
    size = getattr(model.visual, "image_size", None) or (224, 224)
    size = (size, size) if isinstance(size, int) else tuple(size)
    dim = getattr(model.visual, "output_dim", None)
    if dim is None:
        with torch.inference_mode():
            dim = int(model.encode_image(torch.zeros(1, 3, *size, device=dev)).shape[-1])
    if kind == "random":
        log.warning("open_clip model %s has RANDOM weights (%s): embeddings carry no semantics", model_name, weights_id)
    return LoadedModel(
        model=model,
        preprocess=preprocess,
        model_name=model_name,
        weights=weights,
        weights_kind=kind,
        weights_id=weights_id,
        dim=int(dim),
        device=dev,
        image_size=(int(size[0]), int(size[1])),
        source=path,
    )


def load_clip_with_fallback(
    model_name: str, weights: str, *, device: str = "cpu", seed: int = 0
) -> tuple[LoadedModel, str | None]:
    """:func:`load_clip`, falling back to random weights when the weights cannot be had.

    For ``vecexplore demo`` only: a wrong model name or device still raises.

    Returns:
        ``(model, reason)``: ``reason`` is None when ``weights`` loaded, else the
        message of the :class:`WeightsError` that caused the fallback (also logged
        as a warning).
    """
    try:
        return load_clip(model_name, weights, device=device, seed=seed), None
    except WeightsError as exc:
        _check_model_name(model_name)  # an unknown architecture cannot fall back
        reason = str(exc)
    log.warning(
        "FALLING BACK TO RANDOM WEIGHTS: %s. The map will show the structure an untrained "
        "network sees, not semantic groups; every view will say so.",
        reason,
    )
    return load_clip(model_name, f"random:{seed}", device=device, seed=seed), reason
