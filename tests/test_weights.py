"""ImageNet initialisation (``model.pretrained``), without a network: a Hugging Face hub cache
built here, in the layout huggingface_hub writes and timm reads, holds a randomly initialised
encoder as its "ImageNet" weights; the hub is set offline (or pointed at a closed port)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import timm
import torch
import yaml
from huggingface_hub import constants as hub_constants
from huggingface_hub.file_download import repo_folder_name
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from timm.models import adapt_input_conv, get_pretrained_cfg

from conftest import ROOT, free_port
from core.errors import BallspotError
from core.model import BallActionModel, ModelConfig, load, load_config
from core.store import Store
from core.training.config import TrainConfig
from core.training.train import train
from core.weights import save_imagenet_weights
from core.workspace import Workspace
from test_train import TINY, ws  # noqa: F401  (ws: the tiny training workspace, a fixture)

#: tiny.yaml's encoder: small, and timm has its ImageNet weights on the hub.
ENCODER = yaml.safe_load(TINY.read_text())["model"]["encoder"]
STEM = "conv_stem.weight"
REMEDIES = (f"python launch.py weights {ENCODER} --out FILE", "model.pretrained: FILE", "HF_HOME")


def _hub_cache(hf_home: Path) -> dict[str, torch.Tensor]:
    """``hf_home/hub`` as huggingface_hub leaves it after downloading ``ENCODER``'s weights
    (blobs, a snapshot of links to them, refs/main), filled from a randomly initialised timm
    classifier with random batch-norm statistics; returns those weights."""
    torch.manual_seed(1234)
    net = timm.create_model(ENCODER, pretrained=False)  # the whole classifier, as the hub has it
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith("running_mean"):
                buf.normal_()
            elif name.endswith("running_var"):
                buf.uniform_(0.5, 2.0)
    state = {k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}
    cfg = get_pretrained_cfg(ENCODER)
    repo = hf_home / "hub" / repo_folder_name(repo_id=cfg.hf_hub_id, repo_type="model")
    commit = hashlib.sha1(cfg.hf_hub_id.encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    for folder in (repo / "blobs", repo / "refs", snapshot):
        folder.mkdir(parents=True, exist_ok=True)
    tmp = hf_home / "weights.safetensors"
    save_file(state, str(tmp))
    config = json.dumps({"architecture": ENCODER, "num_classes": 1000, "pretrained_cfg": cfg.to_dict()},
                        default=list).encode()
    for name, data in (("model.safetensors", tmp.read_bytes()), ("config.json", config)):
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs" / "main").write_text(commit)
    tmp.unlink()
    return state


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    home = tmp_path_factory.mktemp("hf")
    return home, _hub_cache(home)


def _hub_env(home: Path, **extra: str) -> dict[str, str]:
    """A child process's environment: the hub's cache under ``home``, the hub offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return {**env, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1", **extra}


def _use_hub(monkeypatch, home: Path, offline: bool = True) -> None:
    """In this process: huggingface_hub read HF_HUB_CACHE and HF_HUB_OFFLINE when imported, so
    its constants are what to change (it reads them on every call)."""
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def hub(cache, monkeypatch) -> dict[str, torch.Tensor]:
    """The built cache in use, offline; its weights."""
    _use_hub(monkeypatch, cache[0])
    return cache[1]


def _model_config(stack: int, pretrained: str) -> ModelConfig:
    return ModelConfig(encoder=ENCODER, frames=3 * stack, stack=stack, input_size=(64, 112), feature_stage=-2,
                       proj_channels=16, blocks_3d=1, stack_channels=16, pretrained=pretrained)


def _expected(cached: dict[str, torch.Tensor], keys, stack: int) -> dict[str, torch.Tensor]:
    """The encoder's weights from the cached ones: timm's own adaptation of the stem for ``stack``."""
    out = {k: cached[k] for k in keys}
    out[STEM] = adapt_input_conv(stack, cached[STEM], base_chans=3)
    return out


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(got) == set(want)
    different = [k for k in want if not torch.equal(got[k], want[k])]
    assert not different, different[:5]


@pytest.mark.parametrize("stack", [3, 2, 5])
def test_imagenet_starts_the_encoder_from_the_hub_weights_stem_adapted_as_timm_does(hub, stack):
    model = BallActionModel(_model_config(stack, "imagenet"))
    got = model.encoder.state_dict()
    assert got[STEM].shape[1] == stack
    assert set(got) <= set(hub), "every encoder weight comes from the hub's file"
    _assert_same(got, _expected(hub, got, stack))
    if stack != 3:  # timm repeats the 3 channels and scales them (not the same weights under another name)
        assert not torch.equal(got[STEM][:, :3], hub[STEM])


def test_a_training_run_with_imagenet_starts_from_the_hub_weights(ws, hub, tmp_path):  # noqa: F811
    """The encoder stays frozen (``encoder_lr_scale: 0``), so the registered model's encoder is
    where the run started: the hub's weights, not a random or a synthetically pretrained one
    (the config keeps tiny.yaml's pretraining steps, which ImageNet weights replace)."""
    config = TrainConfig.load(TINY, epochs=1, samples_per_epoch=32, encoder_lr_scale=0)
    config.model.pretrained = "imagenet"
    with Store.open(ws) as store:
        row = train(config, store, ws, out=tmp_path / "run")
    assert not (tmp_path / "run" / "encoder.safetensors").exists(), "no synthetic pretraining over ImageNet"
    model = load(row["path"])
    got = {k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    _assert_same(got, _expected(hub, got, 3))


def test_launch_weights_saves_a_file_that_starts_the_encoder_as_imagenet_does(cache, hub, tmp_path):
    home, _ = cache
    out = tmp_path / "kept" / f"{ENCODER}.safetensors"
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "weights", ENCODER, "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=_hub_env(home))
    assert done.returncode == 0, done.stdout + done.stderr
    assert str(out) in done.stdout and not list(out.parent.glob(".*partial"))
    with safe_open(str(out), "pt") as f:
        assert f.metadata()["encoder"] == ENCODER
    saved = load_file(str(out))
    assert saved[STEM].shape[1] == 3, "the file keeps ImageNet's 3 channels; each model adapts them"
    for stack in (3, 5):
        from_file = BallActionModel(_model_config(stack, str(out))).encoder.state_dict()
        from_hub = BallActionModel(_model_config(stack, "imagenet")).encoder.state_dict()
        _assert_same(from_file, from_hub)
    with pytest.raises(BallspotError, match=r"must end in \.safetensors"):
        save_imagenet_weights(ENCODER, tmp_path / "weights.pt")


def test_a_run_with_imagenet_resumes_without_the_hub(ws, hub, tmp_path, monkeypatch):  # noqa: F811
    """A resume reads every weight from its checkpoint: offline, with the hub's cache gone, an
    interrupted ImageNet run still finishes, its encoder still the hub's weights (kept frozen)."""
    config = TrainConfig.load(TINY, epochs=1, samples_per_epoch=32, encoder_lr_scale=0)
    config.model.pretrained = "imagenet"
    with Store.open(ws) as store:
        train(config, store, ws, out=tmp_path / "run")
        _use_hub(monkeypatch, tmp_path / "empty-hf")  # nothing cached, offline
        longer = TrainConfig.load(TINY, epochs=2, samples_per_epoch=32, encoder_lr_scale=0)
        longer.model.pretrained = "imagenet"
        row = train(longer, store, ws, out=tmp_path / "run", resume=True)
    assert row["metrics"]["epochs"] == 2
    model = load(row["path"])
    got = {k[len("encoder."):]: v for k, v in model.state_dict().items() if k.startswith("encoder.")}
    _assert_same(got, _expected(hub, got, 3))


def _imagenet_config(tmp_path: Path) -> Path:
    data = yaml.safe_load(TINY.read_text())
    data["model"]["pretrained"] = "imagenet"
    path = tmp_path / "imagenet.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_imagenet_offline_without_the_weights_fails_at_once_before_any_data(tmp_path, monkeypatch):
    """Nothing cached and the hub offline: a BallspotError within seconds naming both remedies.
    The workspace is empty, so loading the data first would fail otherwise ("no labelled game")."""
    _use_hub(monkeypatch, tmp_path / "empty-hf")
    empty = Workspace.at(tmp_path / "ws").ensure()
    config = TrainConfig.load(_imagenet_config(tmp_path))
    t0 = time.perf_counter()
    with Store.open(empty) as store, pytest.raises(BallspotError) as err:
        train(config, store, empty, out=tmp_path / "run")
    assert time.perf_counter() - t0 < 2.0
    message = str(err.value)
    assert all(r in message for r in REMEDIES) and "HF_HUB_OFFLINE" in message, message
    assert "no labelled game" not in message and not (tmp_path / "run").exists()


@pytest.mark.parametrize("hub_is", ["offline", "unreachable"])
def test_launch_train_with_imagenet_and_no_hub_exits_with_the_remedies(tmp_path, hub_is):
    """The command line: exit code 2, the message, no traceback, in seconds. Unreachable: the
    hub's address is a closed port here (a machine without a network)."""
    extra = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"} if hub_is == "unreachable" else {}
    t0 = time.perf_counter()
    config = _imagenet_config(tmp_path)
    done = subprocess.run([sys.executable, str(ROOT / "launch.py"), "train", "--config", str(config),
                           "--workspace", str(tmp_path / "ws"), "--out", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=_hub_env(tmp_path / "empty-hf", **extra))
    elapsed = time.perf_counter() - t0
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "error: the ImageNet weights of encoder" in done.stderr, done.stderr
    assert all(r in done.stderr for r in REMEDIES), done.stderr
    assert ("HF_HUB_OFFLINE" if hub_is == "offline" else "cannot be reached") in done.stderr
    assert "no labelled game" not in done.stderr and not (tmp_path / "run").exists()
    assert elapsed < 60, elapsed  # the interpreter and torch's import included; the check itself: the test above


def test_old_configs_and_saved_models_with_pretrained_weights_still_load(tmp_path):
    """``pretrained_weights`` (the key before ``pretrained``): a file, or null for none; the
    shipped demo model carries one and loads with its own weights, nothing fetched."""
    assert ModelConfig.from_dict({"pretrained_weights": "enc.safetensors"}).pretrained == "enc.safetensors"
    assert ModelConfig.from_dict({"pretrained_weights": None}).pretrained == "none"
    assert ModelConfig.from_dict({}).pretrained == "none" and ModelConfig(pretrained=None).pretrained_file is None
    assert ModelConfig(pretrained="ImageNet").pretrained == "imagenet"
    with pytest.raises(BallspotError, match="pretrained only"):
        ModelConfig.from_dict({"pretrained_weights": "a.safetensors", "pretrained": "imagenet"})
    demo = ROOT / "assets" / "demo-model"
    assert "pretrained_weights" in json.loads((demo / "config.json").read_text())
    assert load_config(demo).pretrained == "none"
    assert load(demo).config.track_frames > 0


def test_a_weights_file_that_does_not_fit_is_a_clear_error(tmp_path):
    missing = tmp_path / "nothing.safetensors"
    with pytest.raises(BallspotError, match="no such weights file"):
        BallActionModel(_model_config(3, str(missing)))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not weights")
    with pytest.raises(BallspotError, match="junk.safetensors: model.pretrained: not a safetensors"):
        BallActionModel(_model_config(3, str(junk)))
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("resnet18", features_only=True).state_dict().items()},
              str(other))
    with pytest.raises(BallspotError, match=f"other.safetensors: model.pretrained: does not fit encoder {ENCODER}"):
        BallActionModel(_model_config(3, str(other)))
