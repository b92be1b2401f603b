"""Per-sample gradients against a plain autograd loop, one sample at a time (float64)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from conftest import engine_gradients, reference_gradient, tiny_cnn, tiny_vit

from skfungi import FungiTransformer, ImageBackbone, TimmBackbone
from skfungi._engine.gradients import GradientCapture
from skfungi.backbones import frozen_eval
from skfungi.backbones.layers import resolve_layer, supported_layers
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss

LOSSES = [KLLoss(), DINOLoss(latent_dim=32), SimCLRLoss(latent_dim=16, grid_size=3)]


def backbones_float64():
    return {
        "vit-linear": lambda: TimmBackbone(tiny_vit(torch.float64)),
        "cnn-1x1-bias": lambda: ImageBackbone(tiny_cnn(torch.float64), layer="pointwise", input_size=12),
        "cnn-1x1-nobias": lambda: ImageBackbone(tiny_cnn(torch.float64, bias=False), layer="pointwise", input_size=12),
    }


@pytest.mark.parametrize("backbone_name", list(backbones_float64()))
@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_per_sample_gradients_match_autograd_loop(backbone_name, loss, images):
    fungi = FungiTransformer(backbones_float64()[backbone_name](), losses=(loss,), random_state=3, batch_size=4).fit(
        images
    )
    fitted = fungi.losses_[0]
    batch = [fungi.backbone_.canonical(torch.from_numpy(im).permute(2, 0, 1) / 255.0, i) for i, im in enumerate(images)]
    fast = engine_gradients(fungi, fitted, batch)
    for index, image in enumerate(batch):
        slow = reference_gradient(fungi, fitted, image)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


class ConvolutionTarget(nn.Module):
    """A 3x3 stem, then the target convolution (any kernel, stride, padding, dilation, groups), BatchNorm,
    ReLU, global average pooling; ``one_d`` runs the target as an nn.Conv1d over the flattened positions."""

    def __init__(self, one_d: bool = False, **conv):
        super().__init__()
        self.one_d = one_d
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.target = (nn.Conv1d if one_d else nn.Conv2d)(6, conv.pop("out_channels", 8), **conv)
        self.norm = (nn.BatchNorm1d if one_d else nn.BatchNorm2d)(self.target.out_channels)
        with torch.no_grad():
            self.norm.running_mean.uniform_(-0.5, 0.5)
            self.norm.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        if self.one_d:
            x = x.flatten(2)
        return torch.relu(self.norm(self.target(x))).flatten(2).mean(dim=2)


CONVOLUTIONS = {
    "3x3": {"kernel_size": 3, "padding": 1},
    "3x3-stride2-nobias": {"kernel_size": 3, "stride": 2, "padding": 1, "bias": False},
    "3x3-dilation2": {"kernel_size": 3, "padding": 2, "dilation": 2},
    "5x3-reflect": {"kernel_size": (5, 3), "padding": (2, 1), "padding_mode": "reflect"},
    "4x4-same-circular": {"kernel_size": 4, "padding": "same", "padding_mode": "circular"},
    "2x2-stride2-valid": {"kernel_size": 2, "stride": 2},
    "grouped": {"kernel_size": 3, "padding": 1, "groups": 2},
    "depthwise": {"kernel_size": 3, "padding": 1, "groups": 6, "out_channels": 6},
    "pointwise-grouped-nobias": {"kernel_size": 1, "groups": 2, "bias": False},
    "conv1d-5-stride2": {"one_d": True, "kernel_size": 5, "stride": 2, "padding": 2},
    "conv1d-depthwise": {"one_d": True, "kernel_size": 3, "groups": 6, "out_channels": 12, "padding": 1},
}


@pytest.mark.parametrize("conv", list(CONVOLUTIONS))
@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_convolution_gradients_match_autograd_loop(conv, loss, images):
    """Any nn.Conv1d / nn.Conv2d as the target: per output position a linear map of the patch its kernel
    covers (im2col), so the per-sample gradient is exact, float64, against autograd on the weights."""
    torch.manual_seed(0)
    module = ConvolutionTarget(**CONVOLUTIONS[conv]).double()
    fungi = FungiTransformer(ImageBackbone(module, layer="target", input_size=12), losses=(loss,), random_state=3)
    fungi.set_params(batch_size=4).fit(images)
    target = module.target
    expected_width = target.in_channels // target.groups * int(np.prod(target.kernel_size)) + (target.bias is not None)
    assert fungi.gradient_shape_ == (target.out_channels, expected_width)
    batch = [fungi.backbone_.canonical(torch.from_numpy(im).permute(2, 0, 1) / 255.0, i) for i, im in enumerate(images)]
    fast = engine_gradients(fungi, fungi.losses_[0], batch)
    for index, image in enumerate(batch):
        slow = reference_gradient(fungi, fungi.losses_[0], image)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("projection", ["kronecker", "srht"])
def test_grouped_convolution_features_equal_projected_reference_gradients(projection, images):
    torch.manual_seed(0)
    module = ConvolutionTarget(**CONVOLUTIONS["depthwise"]).double()
    fungi = FungiTransformer(
        ImageBackbone(module, layer="target", input_size=12), losses=(LOSSES[0],), projection=projection, random_state=1
    ).fit(images)
    features = fungi.transform(images)
    matrix = fungi.projection_.matrix().double()
    width = fungi.embedding_dim_
    for index, array in enumerate(images):
        image = torch.from_numpy(array).permute(2, 0, 1) / 255.0
        projected = matrix @ reference_gradient(fungi, fungi.losses_[0], image).flatten()
        np.testing.assert_allclose(features[index, width:], F.normalize(projected, dim=0).numpy(), atol=1e-5)


def test_features_equal_projected_reference_gradients(images):
    """End to end: each block = normalise(P @ vec(reference gradient)), P materialised."""
    backbone = TimmBackbone(tiny_vit(torch.float64))
    fungi = FungiTransformer(backbone, losses=LOSSES, random_state=1, batch_size=3).fit(images)
    features = fungi.transform(images)
    matrix = fungi.projection_.matrix().double()
    width = fungi.embedding_dim_
    for index, array in enumerate(images):
        image = torch.from_numpy(array).permute(2, 0, 1) / 255.0
        for block, loss in enumerate(fungi.losses_, start=1):
            projected = matrix @ reference_gradient(fungi, loss, image).flatten()
            expected = F.normalize(projected, dim=0).numpy()
            np.testing.assert_allclose(features[index, block * width : (block + 1) * width], expected, atol=1e-5)


def test_only_cls_tokens_are_kept_after_last_attention_projection(images):
    """The exact CLS-only structure: one token per view reaches the projection."""
    backbone = TimmBackbone(tiny_vit())
    views = torch.rand(4, 3, 16, 16)
    with frozen_eval(backbone.module), GradientCapture(backbone.module, backbone.default_layer) as capture:
        with torch.enable_grad():
            loss = backbone.embed(backbone.prepare(views)).pow(2).sum()
        g, a = capture.factors(loss, n_samples=2)
    assert g.shape == (2, 2, 12)  # 2 samples x (2 views x 1 CLS token)
    assert a.shape == (2, 2, 13)  # bias column appended


def test_gradient_capture_leaves_no_hook_and_no_grad_in_trunk():
    model = tiny_vit()
    backbone = TimmBackbone(model)
    layer = resolve_layer(model, backbone.default_layer)
    with frozen_eval(model), GradientCapture(model, backbone.default_layer) as capture:
        with torch.enable_grad():
            loss = backbone.embed(backbone.prepare(torch.rand(2, 3, 16, 16))).sum()
        capture.factors(loss, 2)
        assert all(param.grad is None for param in model.parameters())
    assert not layer._forward_hooks


def test_trunk_runs_without_autograd_and_only_the_tail_is_recorded(images):
    """Grad mode is off in every block before the target layer and on after it, for the
    inference view (KL) and for the loss views (DINO); the features are those of the
    reference gradients, and a user's ``torch.no_grad()`` around ``transform`` changes nothing."""
    model = tiny_vit(torch.float64)
    seen = {}

    def record(name):
        def hook(module, inputs):
            seen.setdefault(name, set()).add(torch.is_grad_enabled())

        return hook

    handles = [
        model.blocks[0].register_forward_pre_hook(record("first block")),
        model.blocks[1].mlp.register_forward_pre_hook(record("tail")),
    ]
    fungi = FungiTransformer(
        TimmBackbone(model), losses=(KLLoss(), DINOLoss(latent_dim=32)), random_state=0, batch_size=4
    ).fit(images)
    seen.clear()
    features = fungi.transform(images)
    with torch.no_grad():
        features_no_grad = fungi.transform(images)
    for handle in handles:
        handle.remove()
    assert seen == {"first block": {False}, "tail": {True}}
    np.testing.assert_array_equal(features_no_grad, features)
    assert torch.is_grad_enabled()


def test_layer_errors_list_candidates():
    model = tiny_vit()
    with pytest.raises(ValueError, match=r"does not exist.*candidate layers.*blocks\.1\.attn\.proj"):
        resolve_layer(model, "blocks.9.attn.proj")
    with pytest.raises(ValueError, match=r"is a LayerNorm.*candidate layers"):
        resolve_layer(model, "blocks.1.norm1")
    cnn = tiny_cnn()
    with pytest.raises(ValueError, match=r"is a BatchNorm2d; FUNGI needs an nn.Linear, nn.Conv1d or nn.Conv2d"):
        resolve_layer(cnn, "norm")
    assert supported_layers(cnn) == ["stem", "pointwise"]  # any convolution, 3x3 included
    with pytest.raises(ValueError, match=r"has no supported layer \(nn.Linear, nn.Conv1d or nn.Conv2d\)"):
        resolve_layer(nn.Sequential(nn.ReLU()), "0")


class AttentionEncoder(nn.Module):
    """Patch embedding, CLS token, one pre-norm block built on nn.MultiheadAttention."""

    def __init__(self, batch_first: bool, separate_kv: bool = False, width: int = 8):
        super().__init__()
        self.batch_first = batch_first
        self.patches = nn.Conv2d(3, width, 4, stride=4)
        self.cls = nn.Parameter(torch.randn(1, 1, width))
        self.norm = nn.LayerNorm(width)
        kv_dim = width + 2 if separate_kv else None
        self.kv = nn.Linear(width, kv_dim) if separate_kv else nn.Identity()
        self.attention = nn.MultiheadAttention(width, 2, batch_first=batch_first, kdim=kv_dim, vdim=kv_dim)
        self.mlp = nn.Sequential(nn.Linear(width, 16), nn.GELU(), nn.Linear(16, width))

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(len(tokens), -1, -1), tokens], dim=1)
        h = self.norm(tokens)
        kv = self.kv(h)
        if not self.batch_first:
            h, kv = h.transpose(0, 1), kv.transpose(0, 1)
        attended = self.attention(h, kv, kv)[0]
        if not self.batch_first:
            attended = attended.transpose(0, 1)
        tokens = tokens + attended
        return (tokens + self.mlp(tokens))[:, 0]


class EncoderLayerModel(nn.Module):
    """nn.TransformerEncoderLayer, whose eval-mode fast path bypasses module hooks."""

    def __init__(self):
        super().__init__()
        self.patches = nn.Conv2d(3, 8, 4, stride=4)
        self.layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True, dropout=0.0)

    def forward(self, x):
        return self.layer(self.patches(x).flatten(2).transpose(1, 2)).mean(1)


ATTENTION_MODELS = {
    "batch-first": (lambda: AttentionEncoder(batch_first=True), "attention.out_proj"),
    "sequence-first": (lambda: AttentionEncoder(batch_first=False), "attention.out_proj"),
    "separate-kv-weights": (lambda: AttentionEncoder(True, separate_kv=True), "attention.out_proj"),
    "encoder-layer": (EncoderLayerModel, "layer.self_attn.out_proj"),
}


@pytest.mark.parametrize("model_name", list(ATTENTION_MODELS))
@pytest.mark.parametrize("loss", LOSSES[:2], ids=lambda loss: loss.name)
def test_multihead_attention_out_proj_gets_its_true_gradient(model_name, loss, images):
    build, layer = ATTENTION_MODELS[model_name]
    torch.manual_seed(0)
    backbone = ImageBackbone(build().double(), layer=layer, input_size=16)
    fungi = FungiTransformer(backbone, losses=(loss,), random_state=0, batch_size=4).fit(images)
    batch = [torch.from_numpy(im).permute(2, 0, 1) / 255.0 for im in images]
    fast = engine_gradients(fungi, fungi.losses_[0], batch)
    for index, image in enumerate(batch):
        slow = reference_gradient(fungi, fungi.losses_[0], image)
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)
    assert torch.backends.mha.get_fastpath_enabled()  # restored after capture


def test_layer_never_called_is_reported():
    model = tiny_cnn()
    model.unused = nn.Linear(3, 3)
    with GradientCapture(model, "unused") as capture, pytest.raises(RuntimeError, match="never called"):
        capture.factors(model(torch.rand(1, 3, 8, 8)).sum(), 1)


class SharedLayerNet(nn.Module):
    """A stem, then one linear layer applied ``calls`` times (tied weights, as a recurrent cell)."""

    def __init__(self, calls: int = 2):
        super().__init__()
        self.calls = calls
        self.stem = nn.Conv2d(3, 6, 4, stride=4)
        self.shared = nn.Linear(6, 6)

    def forward(self, x):
        h = self.stem(x).mean(dim=(2, 3))
        for _ in range(self.calls):
            h = torch.tanh(self.shared(h))
        return h


@pytest.mark.parametrize("calls", [2, 3])
@pytest.mark.parametrize("loss", LOSSES, ids=lambda loss: loss.name)
def test_a_layer_called_several_times_gets_its_summed_gradient(calls, loss, images):
    torch.manual_seed(0)
    backbone = ImageBackbone(SharedLayerNet(calls).double(), layer="shared", input_size=16)
    fungi = FungiTransformer(backbone, losses=(loss,), random_state=0, batch_size=4).fit(images)
    batch = [torch.from_numpy(im).permute(2, 0, 1) / 255.0 for im in images]
    fast = engine_gradients(fungi, fungi.losses_[0], batch)
    for index, image in enumerate(batch):
        slow = reference_gradient(fungi, fungi.losses_[0], image)  # autograd on the shared weight: all calls
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("projection", ["rademacher", "kronecker", "srht"])
def test_features_of_a_shared_layer_are_its_projected_summed_gradient(projection, images):
    torch.manual_seed(0)
    backbone = ImageBackbone(SharedLayerNet(3).double(), layer="shared", input_size=16)
    loss = KLLoss()
    fungi = FungiTransformer(backbone, losses=(loss,), projection=projection, random_state=0).fit(images)
    features = fungi.transform(images)
    matrix = fungi.projection_.matrix().double()
    width = fungi.embedding_dim_
    for index, array in enumerate(images):
        image = torch.from_numpy(array).permute(2, 0, 1) / 255.0
        expected = F.normalize(matrix @ reference_gradient(fungi, fungi.losses_[0], image).flatten(), dim=0)
        np.testing.assert_allclose(features[index, width:], expected.numpy(), atol=1e-5)


class InPlaceAfterTarget(nn.Module):
    """The target convolution followed by an in-place add and an in-place ReLU (VGG's ``Conv2d,
    ReLU(inplace=True)``), optionally applied twice (shared weights)."""

    def __init__(self, calls: int = 1):
        super().__init__()
        self.calls = calls
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.target = nn.Conv2d(6, 6, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        h = torch.tanh(self.stem(x))
        for _ in range(self.calls):
            h = self.target(h)
            h += 0.1
            h = self.relu(h)
        return h.flatten(2).mean(dim=2)


@pytest.mark.parametrize("calls", [1, 2])
def test_an_in_place_operation_after_the_target_layer_keeps_the_true_gradient(calls, images):
    """The hook returned the recorded leaf itself: nn.ReLU(inplace=True) right after the target failed inside
    torch ('a leaf Variable that requires grad is being used in an in-place operation')."""
    torch.manual_seed(0)
    backbone = ImageBackbone(InPlaceAfterTarget(calls).double(), layer="target", input_size=12)
    fungi = FungiTransformer(backbone, losses=(LOSSES[0],), random_state=0, batch_size=3).fit(images)
    batch = [torch.from_numpy(im).permute(2, 0, 1) / 255.0 for im in images]
    fast = engine_gradients(fungi, fungi.losses_[0], batch)
    for index, image in enumerate(batch):
        slow = reference_gradient(fungi, fungi.losses_[0], image)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


class DiscardedTarget(nn.Module):
    """The target is called, but its output never reaches the embedding."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.target = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x):
        h = torch.tanh(self.stem(x))
        self.target(h)
        return h.flatten(2).mean(dim=2)


def test_a_target_layer_whose_output_is_discarded_is_named(images):
    """Failed inside torch.autograd.grad ('element 0 of tensors does not require grad and does not have a
    grad_fn'), naming neither the layer nor the cause."""
    backbone = ImageBackbone(DiscardedTarget(), layer="target", input_size=12)
    with pytest.raises(RuntimeError, match=r"target layer 'target' was called .* does not depend on its output"):
        FungiTransformer(backbone, losses=(LOSSES[0],), random_state=0).fit(images).transform(images)


class TiedConvolutions(nn.Module):
    """Two convolutions that share one weight (``second.weight = first.weight``), or a parent that holds it."""

    def __init__(self, holder: str):
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.first = nn.Conv2d(6, 6, 3, padding=1)
        self.second = nn.Conv2d(6, 6, 3, padding=1)
        if holder == "module":
            self.second.weight = self.first.weight
        else:
            self.shared = self.first.weight

    def forward(self, x):
        h = torch.tanh(self.first(torch.tanh(self.stem(x))))
        if hasattr(self, "shared"):
            return F.conv2d(h, self.shared, padding=1).flatten(2).mean(dim=2)
        return torch.tanh(self.second(h)).flatten(2).mean(dim=2)


@pytest.mark.parametrize("holder", ["module", "parent"])
def test_a_target_whose_weight_is_tied_to_another_module_is_refused(holder, images):
    """The hook sees the target's calls only: the other module's use of the tied weight was silently left out of
    the gradient (half of it here)."""
    backbone = ImageBackbone(TiedConvolutions(holder), layer="first", input_size=12)
    other = "second.weight" if holder == "module" else "shared"
    with pytest.raises(ValueError, match=f"layer 'first' shares its parameters with '{other}'"):
        FungiTransformer(backbone, losses=(LOSSES[0],), random_state=0).fit(images)
    same_module = ImageBackbone(SharedLayerNet(2), layer="shared", input_size=16)  # one module, called twice
    FungiTransformer(same_module, losses=(LOSSES[0],), random_state=0).fit(images)


class FunctionalReuse(nn.Module):
    """The target convolution, then its own weight applied again functionally (``F.conv2d(h, self.first.weight)``):
    a use that no module holds and no hook sees."""

    def __init__(self, where: str):
        super().__init__()
        self.where = where
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.first = nn.Conv2d(6, 6, 3, padding=1)

    def forward(self, x):
        h = torch.tanh(self.stem(x))
        if self.where == "before":
            h = torch.tanh(F.conv2d(h, self.first.weight, padding=1))
        h = torch.tanh(self.first(h))
        if self.where == "after":
            h = torch.tanh(F.conv2d(h, self.first.weight, padding=1))
        return h.flatten(2).mean(dim=2)


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_target_whose_weight_is_also_used_functionally_is_refused(where, images):
    """Found by an audit: the gradient silently left that use out (relative error 0.5). The fit compares the
    hook's gradient with autograd's gradient of the weight on one sample."""
    backbone = ImageBackbone(FunctionalReuse(where), layer="first", input_size=12)
    with pytest.raises(ValueError, match=r"target layer 'first' .* differs from autograd's gradient of its weight"):
        FungiTransformer(backbone, losses=(LOSSES[0],), random_state=0).fit(images)
    FungiTransformer(backbone, losses=(), random_state=0).fit(images)  # the embedding alone takes no gradient
