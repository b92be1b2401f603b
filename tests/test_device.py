"""Devices, precision and background decoding (skfungi/_device.py and the engine's use of it)."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
import torch
from conftest import tiny_vit
from PIL import Image

from skfungi import FungiTransformer, TimmBackbone
from skfungi._engine.gradients import GradientCapture
from skfungi._utils.device import autocast, module_on, resolve_device

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks behaviour on a machine without CUDA")


def _fungi(**params):
    return FungiTransformer(TimmBackbone(tiny_vit()), losses=("kl", "simclr"), random_state=0, **params)


def test_auto_resolves_in_fit_without_overwriting_the_parameter(images):
    fungi = _fungi().fit(images)
    assert fungi.device == "auto"
    assert fungi.device_ == resolve_device("auto", fungi.backbone_.module)
    assert fungi.get_params()["device"] == "auto"


def test_cpu_device_keeps_the_users_module_object(images):
    module = tiny_vit()
    fungi = FungiTransformer(TimmBackbone(module), losses=("kl",), device="cpu", random_state=0).fit(images)
    assert fungi.device_ == torch.device("cpu")
    assert fungi.backbone_.module is module


@needs_no_cuda
def test_unavailable_or_unknown_devices_are_clear_errors(images):
    with pytest.raises(ValueError, match="CUDA is not available"):
        _fungi(device="cuda").fit(images)
    with pytest.raises(ValueError, match="device must be 'auto'"):
        _fungi(device="gpu-please").fit(images)


def test_moving_to_another_device_copies_and_never_moves_the_given_module():
    # the meta device stands in for an accelerator: a move must copy, the original stays put
    module = tiny_vit()
    backbone = TimmBackbone(module)
    moved = backbone.to(torch.device("meta"))
    assert moved is not backbone and moved.module is not module
    assert next(moved.module.parameters()).device.type == "meta"
    assert next(module.parameters()).device.type == "cpu" and backbone.module is module
    memo = {}
    assert module_on(module, torch.device("meta"), memo) is module_on(module, torch.device("meta"), memo)
    assert backbone.to(torch.device("cpu")) is backbone


def test_fitted_losses_move_with_their_heads(images):
    fungi = _fungi().fit(images)
    kl = fungi.losses_[0]
    moved = kl.to(torch.device("meta"))
    assert all(tensor.device.type == "meta" for tensor in moved.head_)
    assert all(tensor.device.type == "cpu" for tensor in kl.head_)


@needs_no_cuda
def test_a_transformer_fitted_on_a_missing_accelerator_loads_and_runs_on_cpu(images):
    fungi = _fungi().fit(images)
    expected = fungi.transform(images)
    fungi.device_ = torch.device("cuda")  # as if fitted on a GPU machine
    extractor, backbone = fungi.extractor_, fungi.backbone
    with pytest.warns(UserWarning, match="runs on the CPU"):
        loaded = pickle.loads(pickle.dumps(fungi))
    assert fungi.extractor_ is extractor and fungi.backbone is backbone  # pickling copies, never moves, the original
    assert loaded.device_ == torch.device("cpu")
    np.testing.assert_array_equal(loaded.transform(images), expected)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_reduced_precision_features_are_float32_and_close_to_full_precision(images, precision):
    full = _fungi().fit(images)
    reduced = _fungi(precision=precision).fit(images)
    expected, features = full.transform(images), reduced.transform(images)
    assert features.dtype == np.float32 and np.isfinite(features).all()
    widths = np.cumsum([0, *full.extractor_.block_widths(full.include_embedding)])
    for start, stop in itertools.pairwise(widths):
        cosine = np.sum(expected[:, start:stop] * features[:, start:stop], axis=1)  # blocks are unit rows
        assert cosine.min() > 0.97, (precision, start, cosine)
    assert not np.array_equal(features, expected)  # the forward really ran at lower precision


def test_gradient_factors_accumulate_in_float32_under_autocast():
    module = tiny_vit().eval()
    images = torch.rand(3, 3, 16, 16)
    with GradientCapture(module, "blocks.1.attn.proj") as capture, autocast("bfloat16", torch.device("cpu")):
        embedding = module(images)
        g, a = capture.factors(embedding.double().square().sum(), 3)
    assert g.dtype == torch.float32 and a.dtype == torch.float32


def test_unknown_precision_is_a_clear_error(images):
    with pytest.raises(ValueError, match="'precision' parameter of FungiTransformer must be a str among"):
        _fungi(precision="float8").fit(images)


@pytest.mark.parametrize("num_workers", [-1, 1.5, True])
def test_num_workers_must_be_a_non_negative_int(images, num_workers):
    with pytest.raises(ValueError, match="num_workers"):
        _fungi(num_workers=num_workers).fit(images)


def test_background_decoding_gives_identical_features(images, tmp_path):
    paths = []
    for index, image in enumerate(images):
        paths.append(str(tmp_path / f"{index}.png"))
        Image.fromarray(image).save(paths[-1])
    inline = _fungi(batch_size=2).fit(paths)
    threaded = _fungi(batch_size=2, num_workers=3).fit(paths)
    np.testing.assert_array_equal(threaded.transform(paths), inline.transform(paths))


def test_compiled_backbone_gives_the_same_features_and_leaves_the_module_uncompiled(images):
    module = tiny_vit()
    # the "eager" backend runs dynamo's tracing without code generation: the plumbing, in seconds
    compiled = FungiTransformer(TimmBackbone(module), losses=("kl",), compile={"backend": "eager"}, random_state=0)
    plain = FungiTransformer(TimmBackbone(module), losses=("kl",), random_state=0)
    features = compiled.fit(images).transform(images)
    np.testing.assert_allclose(features, plain.fit(images).transform(images), rtol=1e-5, atol=1e-6)
    assert compiled.backbone_.module._compiled_call_impl is not None
    assert module._compiled_call_impl is None
    loaded = pickle.loads(pickle.dumps(compiled))
    assert loaded.backbone_.module._compiled_call_impl is not None
    np.testing.assert_allclose(loaded.transform(images), features, rtol=1e-5, atol=1e-6)


def test_compile_must_be_a_bool_or_a_dict(images):
    with pytest.raises(ValueError, match="'compile' parameter of FungiTransformer must be an instance of 'bool'"):
        _fungi(compile="yes").fit(images)
