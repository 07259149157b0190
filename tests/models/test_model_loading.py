"""Weights: save/load bit-identical, safetensors only, offline hub, clear errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from sarray.errors import ModelError
from sarray.models.replica import Replica, ReplicaConfig
from sarray.testing.models import batch_of


COMPONENTS = ("unet", "vae", "controlnet", "text_encoder", "text_encoder_2")


def test_saved_weights_load_back_bit_identical(tiny, tiny_weights, spain):
    import torch

    loaded = Replica(ReplicaConfig(preset="tiny", weights=str(tiny_weights), scale=4))
    for name in COMPONENTS:
        a = getattr(tiny.pipe, name).state_dict()
        b = getattr(loaded.pipe, name).state_dict()
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}.{k}"
    tile, meta = spain
    batch = batch_of(tile[None, :, :16, :16], meta)
    np.testing.assert_array_equal(loaded(batch)["output"], tiny(batch)["output"])
    assert not list(tiny_weights.rglob("*.bin"))


def _copy(src, tmp_path):
    dst = tmp_path / "w"
    shutil.copytree(src, dst)
    return dst


def test_missing_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelError, match=f"{missing}.*not a directory.*model_index.json"):
        Replica(ReplicaConfig(weights=str(missing)))


def test_incomplete_folder_names_what_is_missing(tiny_weights, tmp_path):
    w = _copy(tiny_weights, tmp_path)
    (w / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    shutil.rmtree(w / "tokenizer_2")
    with pytest.raises(ModelError, match="incomplete.*unet/\\*.safetensors.*tokenizer_2/"):
        Replica(ReplicaConfig(weights=str(w)))


def test_pickle_weights_are_refused(tiny_weights, tmp_path):
    w = _copy(tiny_weights, tmp_path)
    (w / "vae" / "diffusion_pytorch_model.safetensors").rename(w / "vae" / "diffusion_pytorch_model.bin")
    with pytest.raises(ModelError, match="pickle weights.*diffusion_pytorch_model.bin"):
        Replica(ReplicaConfig(weights=str(w)))


def test_separate_controlnet(tiny_weights, tmp_path, spain, tiny):
    w = _copy(tiny_weights, tmp_path)
    cn = tmp_path / "cn"
    shutil.move(w / "controlnet", cn)
    with pytest.raises(ModelError, match="controlnet/.*controlnet_weights"):
        Replica(ReplicaConfig(weights=str(w)))
    rep = Replica(ReplicaConfig(weights=str(w), controlnet_weights=str(cn), scale=4))
    tile, meta = spain
    batch = batch_of(tile[None, :, :16, :16], meta)
    np.testing.assert_array_equal(rep(batch)["output"], tiny(batch)["output"])
    with pytest.raises(ModelError, match="not a ControlNet folder"):
        Replica(ReplicaConfig(weights=str(w), controlnet_weights=str(tmp_path / "nope")))


def test_hub_id_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="sarray-tests/no-such-model.*HF_HUB_OFFLINE"):
        Replica(ReplicaConfig(weights="sarray-tests/no-such-model", cache_dir=str(tmp_path)))


def test_architecture_mismatch(tiny_weights):
    with pytest.raises(ModelError, match="block_out_channels.*preset 'sdxl'"):
        Replica(ReplicaConfig(preset="sdxl", weights=str(tiny_weights)))
