"""The engine's shortcuts keep the maths exact: features equal a naive path without any of them.

The naive path, per sample and in float64: every view forwarded alone, with autograd through the
target layer's weight (no capture hook: the true weight gradient, trunk included in the forward);
DINO's teacher from its own forward of the global views; SimCLR's negative latents re-encoded from
the bank's training images. The engine instead forwards all views of a batch together, captures the
layer's output as the only leaf (nothing upstream is differentiated), reuses the student's global
embeddings (detached) as the teacher's input, and keeps the negative latents computed once in fit.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import engine_gradients, tiny_cnn, tiny_vit

from skfungi import FungiTransformer, ImageBackbone, TimmBackbone
from skfungi._utils.seeding import derive_seed, generator
from skfungi.backbones import frozen_eval
from skfungi.losses import VIEW_PRESETS, make_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SMALL = {"kl": {}, "dino": {"latent_dim": 32, "n_local_crops": 4}, "simclr": {"latent_dim": 16, "n_negatives": 3}}


def one_view_at_a_time(backbone, views) -> torch.Tensor:
    return torch.cat([backbone.embed(view.unsqueeze(0)) for view in views]).double()


def sample_views(fungi, loss, image, **extra):
    backbone = fungi.backbone_
    seed = derive_seed(fungi.seed_, "views", loss.name, backbone.sample_key(image))
    groups = loss.views(image, backbone, generator(seed), **extra)
    return [view for group in groups for view in group]


def re_encoded_bank(fungi, loss, training_samples) -> torch.Tensor:
    """SimCLR's negative latents, from the bank's training images, one view at a time."""
    backbone, bank = fungi.backbone_, []
    with torch.no_grad():
        for index in loss.negative_indices_:
            negative = backbone.canonical(training_samples[int(index)], int(index))
            views = sample_views(fungi, loss, negative, n_views=loss.negative_views_)
            bank.append(F.normalize(F.linear(one_view_at_a_time(backbone, views), *loss.head_), dim=-1))
    return torch.cat(bank)


def naive_loss(fungi, loss, image, training_samples) -> torch.Tensor:
    backbone = fungi.backbone_
    views = sample_views(fungi, loss, image)
    embeddings = one_view_at_a_time(backbone, views)  # (V, E)
    if loss.name == "dino":
        with torch.no_grad():  # the teacher's own forward of the global crops
            teacher_embeddings = one_view_at_a_time(backbone, views[: loss.n_global_crops])
        student = F.log_softmax(
            F.linear(F.normalize(embeddings, dim=-1), *loss.student_head_) / loss.student_temperature, dim=-1
        )
        teacher = F.softmax(
            F.linear(F.normalize(teacher_embeddings, dim=-1), *loss.teacher_head_) / loss.teacher_temperature, dim=-1
        )
        return -(teacher @ student.T).sum()
    if loss.name == "simclr":
        loss = copy.copy(loss)
        loss.negatives_ = re_encoded_bank(fungi, loss, training_samples)
    return loss.sample_losses(embeddings.unsqueeze(0)).sum()


def naive_gradient(fungi, loss, image, training_samples) -> torch.Tensor:
    layer = fungi.backbone_.module.get_submodule(fungi.layer_)
    with frozen_eval(fungi.backbone_.module):
        for param in (layer.weight, layer.bias):
            param.requires_grad_(True)
        weight, bias = torch.autograd.grad(naive_loss(fungi, loss, image, training_samples), (layer.weight, layer.bias))
    return torch.cat([weight.reshape(weight.shape[0], -1), bias.unsqueeze(1)], dim=1)


BACKBONES = {
    "vit": lambda: TimmBackbone(tiny_vit(torch.float64)),
    "cnn": lambda: ImageBackbone(tiny_cnn(torch.float64), layer="pointwise", input_size=12),
}


@pytest.mark.parametrize("preset", sorted(VIEW_PRESETS))
@pytest.mark.parametrize("loss_name", ["kl", "dino", "simclr"])
@pytest.mark.parametrize("backbone_name", sorted(BACKBONES))
def test_engine_shortcuts_give_the_naive_paths_gradients(backbone_name, loss_name, preset, images):
    loss = make_loss(loss_name, preset).set_params(**SMALL[loss_name])
    fungi = FungiTransformer(BACKBONES[backbone_name](), losses=(loss,), batch_size=8, random_state=0).fit(images)
    fitted = fungi.losses_[0]
    samples = fungi.backbone_.as_samples(images)
    batch = [fungi.backbone_.canonical(samples[index], index) for index in (1, 3, 4)]
    engine = engine_gradients(fungi, fitted, batch)
    assert engine.abs().amax() > 0
    for position, image in enumerate(batch):
        naive = naive_gradient(fungi, fitted, image, samples)
        torch.testing.assert_close(engine[position], naive, rtol=1e-9, atol=1e-12 * naive.abs().amax().item())


def test_negative_latents_cached_in_fit_equal_re_encoding_the_bank(images):
    loss = make_loss("simclr", "fast").set_params(**SMALL["simclr"])
    fungi = FungiTransformer(BACKBONES["cnn"](), losses=(loss,), random_state=0).fit(images)
    fitted, samples = fungi.losses_[0], fungi.backbone_.as_samples(images)
    with frozen_eval(fungi.backbone_.module):
        bank = re_encoded_bank(fungi, fitted, samples)
    assert fitted.negatives_.shape == (3 * 16, 16)
    torch.testing.assert_close(fitted.negatives_, bank, rtol=1e-12, atol=1e-14)
