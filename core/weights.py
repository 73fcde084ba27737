"""An encoder's ImageNet weights: where timm gets them, whether this machine can have them, and
a file of them for machines that cannot.

The 2023 winner's recipe starts its encoder from ImageNet. ``model.pretrained: imagenet`` asks
timm for them as timm always does (``pretrained=True``): from the Hugging Face hub
(``timm/<encoder>.<tag>``), through the hub's local cache (``HF_HOME``/``HF_HUB_CACHE``), the
stem adapted by timm to the stack's channel count. Offline, a download would fail deep inside
model building, after the data is loaded and with a network traceback; :func:`check_pretrained`
says so within seconds instead, at the start of training, naming both remedies:
``python launch.py weights ENCODER --out FILE`` on a connected machine, which saves the
encoder's 3-channel ImageNet weights once (:func:`save_imagenet_weights`) for
``model.pretrained: FILE``; or a connection, or a cache that holds them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import huggingface_hub
import timm
import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError
from safetensors.torch import save_file
from timm.models import get_pretrained_cfg
from timm.models._hub import HF_WEIGHTS_NAME, _get_safe_alternatives, hf_split

from core.errors import BallspotError

if TYPE_CHECKING:
    from core.model import ModelConfig

#: ``model.pretrained`` values that are not files: random initialisation, timm's ImageNet weights.
NONE = "none"
IMAGENET = "imagenet"
#: Seconds the hub may take to say whether it has the weights: a check, so no long waits or retries.
PROBE_TIMEOUT_S = 5.0
#: What ``launch.py weights`` writes (``core.model`` reads any other suffix as a torch file).
WEIGHTS_SUFFIX = ".safetensors"


@dataclass(frozen=True)
class HubWeights:
    """Where timm reads an encoder's ImageNet weights on the Hugging Face hub."""

    encoder: str
    repo_id: str
    revision: str | None
    #: The files timm tries, in its order (a safetensors file first).
    filenames: tuple[str, ...]


def hub_weights(encoder: str) -> HubWeights:
    """The hub repository and files timm reads for ``encoder`` (a timm name, optionally with a
    pretrained tag: ``tf_efficientnetv2_b0`` or ``tf_efficientnetv2_b0.in1k``)."""
    if not timm.is_model(encoder):
        raise BallspotError(f"model.encoder {encoder!r}: timm has no such model")
    try:
        cfg = get_pretrained_cfg(encoder)
    except RuntimeError as exc:  # an architecture timm knows with a tag it does not
        raise BallspotError(f"model.encoder {encoder!r}: {exc}") from None
    if cfg is None or not cfg.hf_hub_id:
        raise BallspotError(f"model.encoder {encoder!r}: timm knows no ImageNet weights for it on the Hugging Face "
                            "hub; use model.pretrained: none, or a weights file")
    repo_id, revision = hf_split(cfg.hf_hub_id)
    # timm.models._hub.load_state_dict_from_hf: a named safetensors file alone; otherwise the
    # safetensors alternatives of the file first, then the file itself.
    filename = cfg.hf_hub_filename or HF_WEIGHTS_NAME
    files = (filename,) if filename.endswith(".safetensors") else (*_get_safe_alternatives(filename), filename)
    return HubWeights(encoder, repo_id, revision, tuple(files))


def cached_file(source: HubWeights) -> Path | None:
    """The file of ``source`` in the local hub cache that timm would read, if there is one."""
    for name in source.filenames:
        found = huggingface_hub.try_to_load_from_cache(source.repo_id, name, revision=source.revision)
        if isinstance(found, str):
            return Path(found)
    return None


def _remedies(source: HubWeights, why: str) -> str:
    cache = hub_constants.HF_HUB_CACHE
    return (f"the ImageNet weights of encoder {source.encoder} ({source.repo_id} on the Hugging Face hub) are not "
            f"in this machine's hub cache ({cache}) and {why}. Either run `python launch.py weights "
            f"{source.encoder} --out FILE{WEIGHTS_SUFFIX}` on a connected machine, copy the file here and set "
            f"`model.pretrained: FILE{WEIGHTS_SUFFIX}` in the training config (instead of imagenet); or connect this "
            "machine to the hub (and unset HF_HUB_OFFLINE), or set HF_HOME (or HF_HUB_CACHE) to a cache that "
            "holds them")


def require_imagenet(encoder: str) -> HubWeights:
    """Fail within seconds, with both remedies, unless timm can load ``encoder``'s ImageNet
    weights here: from the local hub cache, or from the hub, which must answer within
    ``PROBE_TIMEOUT_S`` (nothing is downloaded here; timm does that when it builds the model)."""
    source = hub_weights(encoder)
    if cached_file(source) is not None:
        return source
    if hub_constants.HF_HUB_OFFLINE:
        raise BallspotError(_remedies(source, "the hub is switched off (HF_HUB_OFFLINE)"))
    url = huggingface_hub.hf_hub_url(source.repo_id, source.filenames[0], revision=source.revision)
    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=PROBE_TIMEOUT_S, retry_on_errors=False)
    except (RepositoryNotFoundError, EntryNotFoundError) as exc:
        raise BallspotError(f"the ImageNet weights of encoder {encoder}: the Hugging Face hub has no "
                            f"{source.filenames[0]} in {source.repo_id} ({type(exc).__name__}); give "
                            "model.pretrained a weights file, or none") from None
    except Exception as exc:  # noqa: BLE001 - any failure to reach the hub (DNS, proxy, TLS, timeout) is one answer
        detail = " ".join(str(exc).split())[:160]
        raise BallspotError(_remedies(source, f"the hub cannot be reached ({type(exc).__name__}: {detail})")) from None
    return source


def check_pretrained(config: "ModelConfig") -> None:
    """What ``config.pretrained`` asks for can be had here: the ImageNet weights (cached or
    reachable) or the weights file. Training calls this first, before it loads any data."""
    if config.pretrained == IMAGENET:
        require_imagenet(config.encoder)
    elif config.pretrained_file is not None and not config.pretrained_file.is_file():
        raise BallspotError(f"{config.pretrained_file}: model.pretrained: no such weights file")


def imagenet_encoder(encoder: str, **kwargs) -> torch.nn.Module:
    """``timm.create_model(encoder, pretrained=True, features_only=True, **kwargs)`` after
    :func:`require_imagenet`, with a failed download (the connection lost half-way) reported
    as a :class:`BallspotError` naming the remedies instead of a network traceback."""
    source = require_imagenet(encoder)
    try:
        return timm.create_model(encoder, pretrained=True, features_only=True, **kwargs)
    except OSError as exc:  # huggingface_hub's HTTP and cache errors are OSErrors
        detail = " ".join(str(exc).split())[:160]
        raise BallspotError(_remedies(source, f"the download failed ({type(exc).__name__}: {detail})")) from None


def save_imagenet_weights(encoder: str, out: str | Path) -> Path:
    """Write ``encoder``'s ImageNet weights, as timm loads them with 3 input channels and every
    stage, to ``out`` (safetensors, written whole then renamed in): the file that
    ``model.pretrained: FILE`` loads on a machine without the hub, the stem then adapted to the
    stack exactly as timm adapts it. timm shows the download's progress."""
    out = Path(out)
    if out.suffix != WEIGHTS_SUFFIX:
        raise BallspotError(f"{out}: the weights file must end in {WEIGHTS_SUFFIX}")
    net = imagenet_encoder(encoder)
    source = hub_weights(encoder)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        save_file(state, str(tmp), metadata={"encoder": encoder, "source": source.repo_id})
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out
