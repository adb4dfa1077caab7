"""The CLIP model that names segments: which one (`CAST_CLIP_MODEL`), getting its weights, encoding (spec §11.1).

CLIP itself is open_clip's (`open_clip_torch`); this module only chooses, fetches and wraps it:

- a name is `ViT-B-16:openai` (an open_clip architecture and pretrained tag; the default, as in the paper),
  `hf-hub:org/repo` (a Hub repo in open_clip's layout) or `local-dir:/path` (`open_clip_config.json` and
  `open_clip_model.safetensors` in a folder);
- weights are fetched on first use only, into the standard Hugging Face cache, with progress and resumable
  (the same download path as CAST's own checkpoints, `cast.weights.hub`). When they cannot be had, a
  ClipModelError names the model and says how to get it; open_clip is never allowed to fall back to
  random weights, and no other model is ever used in its place.
"""
from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..errors import ClipModelError
from .vocabulary import PROMPT

ENV_VAR = "CAST_CLIP_MODEL"
DEFAULT_CLIP_MODEL = "ViT-B-16:openai"  # OpenAI's CLIP ViT-B/16, the paper's model (spec §11.1)
CONFIG_NAME = "open_clip_config.json"
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")  # open_clip's preference order
HF_HUB, LOCAL_DIR = "hf-hub:", "local-dir:"


@dataclass(frozen=True)
class ClipModelSpec:
    """Which CLIP: an open_clip architecture with a pretrained tag, an `hf-hub:` repo or a `local-dir:` folder."""

    name: str
    pretrained: str | None = None

    @classmethod
    def parse(cls, text: str) -> "ClipModelSpec":
        """`ViT-B-16:openai`, `hf-hub:org/repo` or `local-dir:/path`."""
        text = (text or "").strip()
        if text.startswith((HF_HUB, LOCAL_DIR)):
            if not text.split(":", 1)[1].strip():
                raise ClipModelError(f"the CLIP model {text!r} names no repo or folder after the ':'")
            return cls(text)
        name, _, tag = text.partition(":")
        if not name or not tag:
            raise ClipModelError(f"the CLIP model {text!r} must be 'ARCHITECTURE:TAG' (e.g. {DEFAULT_CLIP_MODEL}), "
                                 f"'{HF_HUB}org/repo' or '{LOCAL_DIR}/path/to/folder'")
        return cls(name.strip(), tag.strip())

    @property
    def kind(self) -> str:
        """"hf-hub", "local-dir" or "open_clip" (an architecture with a pretrained tag)."""
        if self.name.startswith(HF_HUB):
            return "hf-hub"
        return "local-dir" if self.name.startswith(LOCAL_DIR) else "open_clip"

    @property
    def target(self) -> str:
        """The repo id or folder of an `hf-hub:` / `local-dir:` spec, else the architecture."""
        return self.name.split(":", 1)[1] if self.kind != "open_clip" else self.name

    def __str__(self) -> str:
        return f"{self.name}:{self.pretrained}" if self.pretrained else self.name


def clip_spec(value: str | ClipModelSpec | None = None) -> ClipModelSpec:
    """The CLIP model to use: `value` if given, else `$CAST_CLIP_MODEL`, else OpenAI's ViT-B/16."""
    if isinstance(value, ClipModelSpec):
        return value
    return ClipModelSpec.parse(value or os.environ.get(ENV_VAR) or DEFAULT_CLIP_MODEL)


# ---------------------------------------------------------------- the loaded model
@dataclass
class ClipModel:
    """A loaded open_clip model with its tokenizer and eval transform (spec §11.1).

    `preprocess` is open_clip's own eval transform (PIL in, normalised (3, S, S) tensor out);
    `resize_mode` is how it brings an image to S x S ("shortest": Resize(S) + CenterCrop(S))."""

    spec: ClipModelSpec
    model: nn.Module
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    preprocess: Callable[[Image.Image], torch.Tensor]
    image_size: int
    resize_mode: str = "shortest"
    source: str = ""

    @property
    def id(self) -> str:
        return str(self.spec)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature (100 for OpenAI's models); used for the scores we show."""
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.detach().exp()) if isinstance(scale, torch.Tensor) else 100.0

    def describe(self) -> str:
        return f"CLIP {self.id}" + (f" ({self.source})" if self.source else "")

    @torch.inference_mode()
    def encode_text(self, names: Sequence[str], prompt: str = PROMPT) -> torch.Tensor:
        """(n, D) float32 L2-normalised features of `prompt.format(name)` for each name (spec §11.2)."""
        tokens = self.tokenizer([prompt.format(name) for name in names]).to(self.device)
        features = _encode_text_up_to_eot(self.model, tokens).float().cpu()
        return features / features.norm(dim=-1, keepdim=True)

    @torch.inference_mode()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(n, D) float32 L2-normalised features of normalised images (n, 3, S, S)."""
        features = self.model.encode_image(images.to(self.device)).float().cpu()
        return features / features.norm(dim=-1, keepdim=True)


def _encode_text_up_to_eot(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's `CLIP.encode_text`, run on the tokens up to the longest prompt's end-of-text token only.

    CLIP's text transformer is causal and pools the end-of-text position, so the padding after it cannot
    change the result; a prompt of 8 tokens costs ~10x less than the full 77-token context. The model's
    own modules do the work; any other text tower (or pooling) goes through `encode_text` unchanged.
    The fidelity test checks the features against the notebook's full-context ones."""
    from open_clip.model import CLIP
    from open_clip.transformer import text_global_pool

    mask = getattr(model, "attn_mask", None)
    if type(model) is not CLIP or getattr(model, "text_pool_type", None) != "argmax" or mask is None:
        return model.encode_text(tokens)
    length = int(tokens.argmax(dim=-1).max()) + 1  # the end-of-text token has the largest id
    tokens = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.ln_final(model.transformer(x, attn_mask=mask[:length, :length]))
    x = text_global_pool(x, tokens, "argmax")
    projection = model.text_projection
    if projection is None:
        return x
    return projection(x) if isinstance(projection, nn.Linear) else x @ projection


def wrap_open_clip(model: nn.Module, preprocess: Callable, tokenizer: Callable, name: str,
                   *, resize_mode: str = "shortest") -> ClipModel:
    """A ClipModel around an open_clip model you built yourself (e.g. random weights for a benchmark)."""
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipModel(ClipModelSpec(name), model.eval(), tokenizer, preprocess, size, resize_mode, "built by caller")


# ---------------------------------------------------------------- weights
def _hub_file(repo_id: str, filename: str, *, spec: ClipModelSpec, offline: bool | None,
              progress: Callable | None) -> Path | None:
    """One file of a Hub repo from the standard HF cache, downloading it (resumably) if needed.

    None when the Hub says the file does not exist; ClipModelError when it cannot be had."""
    from huggingface_hub import hf_hub_download

    try:
        from huggingface_hub.errors import EntryNotFoundError
    except ImportError:  # huggingface_hub < 0.24
        from huggingface_hub.utils import EntryNotFoundError

    # the download path CAST's own checkpoints use: resumable blob, progress callback, one error vocabulary
    from ..weights.hub import DOWNLOAD_ERRORS, _download_blob, _progress_class, describe_failure, offline_reason

    try:
        return Path(hf_hub_download(repo_id, filename, local_files_only=True))
    except DOWNLOAD_ERRORS:
        pass
    how = _how_to_get(spec, repo_id)
    reason = offline_reason(offline)
    if reason is not None:
        raise ClipModelError(f"The CLIP model {spec} is not available ({reason}, and {repo_id}/{filename} is not in "
                             f"the Hugging Face cache). {how}")
    tqdm_class = _progress_class(f"CLIP {spec}", progress, None)
    try:
        _download_blob(SimpleNamespace(repo_id=repo_id, filename=filename), None, tqdm_class)
        return Path(hf_hub_download(repo_id, filename, tqdm_class=tqdm_class))
    except EntryNotFoundError:
        return None
    except DOWNLOAD_ERRORS as err:
        if "404" in describe_failure(err):
            return None
        raise ClipModelError(f"The CLIP model {spec} could not be downloaded ({describe_failure(err)}). {how}") from err


def _how_to_get(spec: ClipModelSpec, repo_id: str) -> str:
    from huggingface_hub import constants

    return (f"To get it, run once with network access (it is cached in {constants.HF_HUB_CACHE}): "
            f"`hf download {repo_id}`; or point {ENV_VAR} at a folder with {CONFIG_NAME} and "
            f"{WEIGHT_NAMES[0]} (`{ENV_VAR}=local-dir:/path/to/folder`).")


def _hub_weights(repo_id: str, filename: str | None, **kwargs: Any) -> Path:
    names = [filename] if filename and filename not in WEIGHT_NAMES else list(WEIGHT_NAMES)
    if filename and filename.endswith((".bin", ".pth")) and filename not in WEIGHT_NAMES:
        names.insert(0, filename[:-4] + ".safetensors")  # open_clip prefers a safetensors twin
    for name in names:
        path = _hub_file(repo_id, name, **kwargs)
        if path is not None:
            return path
    raise ClipModelError(f"The Hub repo {repo_id} of CLIP model {kwargs['spec']} has none of {', '.join(names)}.")


def _local_weights(folder: Path, spec: ClipModelSpec) -> Path:
    if not folder.is_dir():
        raise ClipModelError(f"The CLIP folder {folder} ({spec}) does not exist.")
    if not (folder / CONFIG_NAME).is_file():
        raise ClipModelError(f"The CLIP folder {folder} has no {CONFIG_NAME} (open_clip's folder layout).")
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return folder / name
    raise ClipModelError(f"The CLIP folder {folder} has no weights ({' or '.join(WEIGHT_NAMES)}); "
                         "open_clip would use random weights, so it is refused.")


def fetch_clip_weights(spec: str | ClipModelSpec | None = None, *, offline: bool | None = None,
                       progress: Callable | None = None) -> Path:
    """The local weights file of a CLIP model, downloading it into the HF cache on first use."""
    import open_clip

    spec = clip_spec(spec)
    if spec.kind == "local-dir":
        return _local_weights(Path(spec.target).expanduser(), spec)
    if spec.kind == "hf-hub":
        config = _hub_file(spec.target, CONFIG_NAME, spec=spec, offline=offline, progress=progress)
        if config is None:
            raise ClipModelError(f"The Hub repo {spec.target} has no {CONFIG_NAME}: it is not an open_clip model.")
        return _hub_weights(spec.target, None, spec=spec, offline=offline, progress=progress)
    tag_cfg = _tag_config(spec)
    hub = tag_cfg.get("hf_hub", "")
    if not hub:
        raise ClipModelError(f"The CLIP weights {spec} are not on the Hugging Face Hub; download them yourself and "
                             f"use {ENV_VAR}=local-dir:/path/to/folder.")
    repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), None)
    return _hub_weights(repo_id, filename or open_clip.constants.HF_WEIGHTS_NAME, spec=spec, offline=offline,
                        progress=progress)


def _tag_config(spec: ClipModelSpec) -> dict[str, Any]:
    import open_clip

    if open_clip.get_model_config(spec.name) is None:
        raise ClipModelError(f"{spec.name} is not an open_clip architecture (e.g. ViT-B-16); "
                             f"see open_clip.list_models()")
    cfg = open_clip.get_pretrained_cfg(spec.name, spec.pretrained or "")
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.name)) or "none"
        raise ClipModelError(f"open_clip has no pretrained tag {spec.pretrained!r} for {spec.name} (tags: {tags})")
    return cfg


def load_clip(spec: str | ClipModelSpec | None = None, *, device: str | torch.device = "cpu",
              offline: bool | None = None, progress: Callable | None = None) -> ClipModel:
    """Load a CLIP model (default: `$CAST_CLIP_MODEL`, else OpenAI's ViT-B/16), fetching its weights on first use.

    Raises ClipModelError naming the model and how to get it when its weights cannot be had."""
    import open_clip

    spec = clip_spec(spec)
    weights = fetch_clip_weights(spec, offline=offline, progress=progress)
    try:
        if spec.kind == "open_clip":
            cfg = _tag_config(spec)
            # weights from a file: the tag's own settings are applied here (QuickGELU for OpenAI's models,
            # which open_clip 3 only warns about; the eval transform's mean / std / interpolation)
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.name, pretrained=str(weights), force_quick_gelu=bool(cfg.get("quick_gelu")),
                image_mean=cfg.get("mean"), image_std=cfg.get("std"), image_interpolation=cfg.get("interpolation"),
                image_resize_mode=cfg.get("resize_mode"), device=device)  # fmt: skip
            tokenizer = open_clip.get_tokenizer(spec.name)
            resize_mode = cfg.get("resize_mode") or "shortest"
        else:
            folder = weights.parent  # local-dir, or the HF cache snapshot holding the config and the weights
            model, _, preprocess = open_clip.create_model_and_transforms(f"{LOCAL_DIR}{folder}", device=device)
            tokenizer = open_clip.get_tokenizer(f"{LOCAL_DIR}{folder}")
            config = json.loads((folder / CONFIG_NAME).read_text())
            resize_mode = (config.get("preprocess_cfg") or {}).get("resize_mode", "shortest")
    except ClipModelError:
        raise
    except Exception as err:  # open_clip raises RuntimeError / ValueError / KeyError on a bad file
        raise ClipModelError(f"The CLIP model {spec} could not be built from {weights}: {err}") from err
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipModel(spec, model.eval(), tokenizer, preprocess, size, resize_mode, f"weights {weights}")


class ClipModelCache:
    """Loaded CLIP models by spec (an explicit LRU; the app holds one). Thread-safe; loads happen once."""

    def __init__(self, max_models: int = 1, device: str | torch.device = "cpu") -> None:
        self.max_models = max_models
        self.device = device
        self._models: OrderedDict[str, ClipModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: str | ClipModelSpec | None = None, *, progress: Callable | None = None) -> ClipModel:
        spec = clip_spec(spec)
        with self._lock:
            key = str(spec)
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            model = load_clip(spec, device=self.device, progress=progress)
            self._models[key] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return model

    def loaded(self, spec: str | ClipModelSpec | None = None) -> bool:
        with self._lock:
            return str(clip_spec(spec)) in self._models


def clip_array(image: np.ndarray) -> Image.Image:
    """An (H, W, 3) uint8 array as the PIL image open_clip's transform expects."""
    return Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), "RGB")
