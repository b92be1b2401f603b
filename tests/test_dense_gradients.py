"""Dense FUNGI's maths against the slow, obvious computations, on tiny float64 models.

The reference per-token gradient of token ``t`` re-runs the image with the
target layer's output at token ``t`` recomputed from fresh copies of its weight
and bias, and asks ``torch.autograd.grad`` for their gradient: that is, by
definition, the term of the weight gradient that flows through token ``t``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import tiny_cnn, tiny_vit

from skfungi._engine.samples import KeyedSample
from skfungi.backbones import ImageBackbone, frozen_eval
from skfungi.dense import DenseFungiTransformer
from skfungi.dense.loss import token_infonce

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cnn_tokens(module: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """The tiny CNN's map after its 1x1 convolution, BatchNorm and ReLU: one token per position."""
    return torch.relu(module.norm(module.pointwise(torch.relu(module.stem(inputs)))))


def loop_infonce(latents: torch.Tensor, negatives: torch.Tensor, tau: float) -> torch.Tensor:
    """One image's loss, one anchor at a time, written from the formula."""
    n_tokens = latents.shape[0]
    total = 0.0
    for t in range(n_tokens):
        others = [j for j in range(n_tokens) if j != t]
        positive = sum(latents[t] @ latents[j] for j in others) / (n_tokens - 1) / tau
        candidates = [latents[t] @ latents[j] / tau for j in others]
        candidates += [latents[t] @ negative / tau for negative in negatives[t]]
        total = total + torch.logsumexp(torch.stack(candidates), dim=0) - positive
    return total / n_tokens


def brute_force_negatives(dense: DenseFungiTransformer, units: torch.Tensor, key: bytes) -> torch.Tensor:
    """Each token's ``n_negatives`` most similar indexed rows outside its own image, by a full sort."""
    index = dense.extractor_.index
    rows = torch.from_numpy(index.vectors(np.arange(index.n_rows_))).double()
    own = dense.extractor_.groups.get(key)
    similarities = units @ rows.T
    if own is not None:
        similarities[:, torch.from_numpy(index.groups_ == own)] = -torch.inf
    order = similarities.argsort(dim=1, descending=True)[:, : dense.n_negatives]
    return rows[order]


def reference_token_gradients(dense: DenseFungiTransformer, keyed: KeyedSample) -> torch.Tensor:
    """``(T, d_out, d_in + 1)``: the gradient of the image's loss through each token, by autograd."""
    extractor, backbone = dense.extractor_, dense.backbone_
    module = backbone.module
    layer = module.get_submodule(dense.layer_)
    is_conv = isinstance(layer, nn.Conv2d)
    prefix = getattr(module, "num_prefix_tokens", 0)
    inputs = extractor._inputs([keyed])
    grid_width = dense.grid_shape_[1]
    gradients = []
    with frozen_eval(module), torch.enable_grad():
        for t in range(extractor.n_tokens):
            weight = layer.weight.detach().reshape(layer.weight.shape[0], -1).clone().requires_grad_(True)
            bias = layer.bias.detach().clone().requires_grad_(True)

            def through_token_t(mod, args, output, t=t, weight=weight, bias=bias):
                out = output.detach().clone()
                if is_conv:
                    row, col = divmod(t, grid_width)
                    out[0, :, row, col] = F.linear(args[0][0, :, row, col], weight, bias)
                else:
                    out[0, prefix + t] = F.linear(args[0][0, prefix + t], weight, bias)
                return out

            handle = layer.register_forward_hook(through_token_t)
            try:
                grid = extractor.token_fn(module, inputs)
            finally:
                handle.remove()
            units = F.normalize(grid.flatten(2).transpose(1, 2)[0], dim=-1)
            negatives = brute_force_negatives(dense, units.detach(), keyed.key)
            head = extractor.head
            latents = F.normalize(units @ head[0].T + head[1], dim=-1)
            negative_latents = F.normalize(negatives @ head[0].T + head[1], dim=-1)
            loss = loop_infonce(latents, negative_latents, dense.loss_temperature)
            grad_weight, grad_bias = torch.autograd.grad(loss, (weight, bias))
            gradients.append(torch.cat([grad_weight, grad_bias[:, None]], dim=1))
    return torch.stack(gradients)


def _keyed(dense: DenseFungiTransformer, images: np.ndarray, index: int) -> KeyedSample:
    return KeyedSample.of(dense.backbone_, dense.backbone_.as_samples(images), index)


def float64_backbones():
    vit = tiny_vit(torch.float64)  # 16 px, patches of 8: a 2 x 2 grid, one class token
    cnn = ImageBackbone(tiny_cnn(torch.float64), layer="pointwise", input_size=6)  # a 6 x 6 grid of positions
    return {"vit": (vit, {}), "cnn": (cnn, {"tokens": cnn_tokens})}


@pytest.mark.parametrize("name", ["vit", "cnn"])
def test_per_token_gradients_match_an_autograd_loop_over_tokens(name, images):
    backbone, options = float64_backbones()[name]
    dense = DenseFungiTransformer(backbone, random_state=0, **options).fit(images[:4])
    # two fitted images (their own patches are left out of their negatives) and one new image
    new_image = np.random.default_rng(5).integers(0, 256, (1, 20, 20, 3), dtype=np.uint8)
    samples = dense.backbone_.as_samples(np.concatenate([images[[0, 2]], new_image]))
    keyed = [KeyedSample.of(dense.backbone_, samples, i) for i in range(3)]
    assert [sample.key in dense.extractor_.groups for sample in keyed] == [True, True, False]
    with frozen_eval(dense.backbone_.module):
        g, a = dense.extractor_.token_factors(keyed)
    engine = torch.einsum("ntd,nte->ntde", g, a)
    assert engine.shape[1] == dense.grid_shape_[0] * dense.grid_shape_[1]
    for position, sample in enumerate(keyed):
        expected = reference_token_gradients(dense, sample)
        torch.testing.assert_close(engine[position], expected, rtol=1e-9, atol=1e-12)


def test_gradient_block_is_the_dense_projection_of_each_token_gradient(images):
    backbone, _ = float64_backbones()["vit"]
    dense = DenseFungiTransformer(backbone, features=("gradient",), projection="rademacher", random_state=0)
    dense.fit(images[:4])
    expected = (
        reference_token_gradients(dense, _keyed(dense, images, 1)).flatten(1).float() @ dense.projection_.matrix().T
    )
    features = dense.transform(images[1:2])[0].reshape(-1, dense.n_features_out_)
    np.testing.assert_allclose(features, F.normalize(expected, dim=1).numpy(), rtol=1e-4, atol=1e-5)


def test_kronecker_and_dense_paths_project_the_same_gradients(images):
    """Through a Kronecker projection the gradient is never formed; its dense equivalent gives the same numbers."""
    backbone, _ = float64_backbones()["vit"]
    kron = DenseFungiTransformer(backbone, features=("gradient",), random_state=0).fit(images[:4])
    expected = reference_token_gradients(kron, _keyed(kron, images, 3)).flatten(1).float() @ kron.projection_.matrix().T
    features = kron.transform(images[3:4])[0].reshape(-1, kron.n_features_out_)
    np.testing.assert_allclose(features, F.normalize(expected, dim=1).numpy(), rtol=1e-4, atol=1e-5)


def test_vectorised_loss_matches_the_loop():
    rng = torch.Generator().manual_seed(0)
    latents = F.normalize(torch.randn(3, 5, 4, generator=rng, dtype=torch.float64), dim=-1)
    negatives = F.normalize(torch.randn(3, 5, 2, 4, generator=rng, dtype=torch.float64), dim=-1)
    expected = torch.stack([loop_infonce(latents[n], negatives[n], 0.07) for n in range(3)])
    torch.testing.assert_close(token_infonce(latents, negatives, 0.07), expected)


def test_one_token_per_image_is_refused():
    latents = torch.ones(1, 1, 4, dtype=torch.float64)
    with pytest.raises(ValueError, match="at least 2 patch tokens"):
        token_infonce(latents, latents[:, :, None], 0.07)
