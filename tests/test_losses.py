"""Each loss against its formula written out with plain loops (float64)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from skfungi.losses import DINOLoss, KLLoss, LossContext, SimCLRLoss, make_loss
from skfungi.losses._base import random_head


def context(embedding_dim=8, seed=0, encode=None, images=()):
    """A LossContext whose negative bank is ``latents(encode(loss, samples, n_views))``, rows sample-major."""

    def negative_bank(loss, samples, n_views, latents):
        return latents(encode(loss, samples, n_views)).flatten(0, 1)

    return LossContext(
        embedding_dim=embedding_dim,
        seed=seed,
        backbone=SimpleNamespace(modality="image", input_size=16),
        dtype=torch.float64,
        device=torch.device("cpu"),
        training_samples=list(images),
        negative_bank=negative_bank,
    )


def test_random_head_is_seeded_and_bounded():
    weight, bias = random_head(16, 5, seed=7, dtype=torch.float64, device=torch.device("cpu"))
    again, _ = random_head(16, 5, seed=7, dtype=torch.float64, device=torch.device("cpu"))
    other, _ = random_head(16, 5, seed=8, dtype=torch.float64, device=torch.device("cpu"))
    assert torch.equal(weight, again) and not torch.equal(weight, other)
    assert weight.abs().max() <= 0.25 and bias.abs().max() <= 0.25


def test_kl_is_kl_divergence_to_uniform():
    loss = KLLoss(temperature=15.0, latent_dim=6).fit(context())
    embeddings = torch.randn(3, 1, 8, dtype=torch.float64)
    got = loss.sample_losses(embeddings)
    for s in range(3):
        logits = F.linear(embeddings[s, 0] / embeddings[s, 0].norm(), *loss.head_) / 15.0
        p = torch.softmax(logits, dim=0)
        expected = sum((1 / 6) * (math.log(1 / 6) - math.log(p[j])) for j in range(6))
        assert got[s].item() == pytest.approx(expected, rel=1e-12)


def test_dino_sums_cross_entropy_over_all_teacher_student_pairs():
    loss = DINOLoss(n_global_crops=2, n_local_crops=3, latent_dim=5).fit(context())
    embeddings = torch.randn(2, 5, 8, dtype=torch.float64)
    got = loss.sample_losses(embeddings)
    for s in range(2):
        total = 0.0
        for t in range(2):
            e_t = embeddings[s, t] / embeddings[s, t].norm()
            teacher = torch.softmax(F.linear(e_t, *loss.teacher_head_) / 0.07, dim=0)
            for v in range(5):  # same-view pairs included
                e_v = embeddings[s, v] / embeddings[s, v].norm()
                student = torch.log_softmax(F.linear(e_v, *loss.student_head_) / 0.1, dim=0)
                total -= float((teacher * student).sum())
        assert got[s].item() == pytest.approx(total, rel=1e-12)


def test_dino_teacher_and_student_heads_differ():
    loss = DINOLoss(latent_dim=4).fit(context())
    assert not torch.equal(loss.teacher_head_[0], loss.student_head_[0])


@pytest.mark.parametrize("scope", ["all", "positives"])
def test_simclr_matches_the_written_out_infonce(scope):
    negatives_source = torch.randn(3, 4, 8, dtype=torch.float64)  # 3 images x 4 views
    fake_images = [torch.rand(3, 16, 16) for _ in range(5)]
    loss = SimCLRLoss(grid_size=2, latent_dim=6, n_negatives=3, temperature_scope=scope, temperature=0.07)
    loss.fit(context(encode=lambda _loss, batch, n_views: negatives_source[: len(batch)], images=fake_images))
    assert len(loss.negative_indices_) == 3 and loss.negatives_.shape == (12, 6)
    embeddings = torch.randn(2, 4, 8, dtype=torch.float64)
    got = loss.sample_losses(embeddings)
    tau = 0.07
    for s in range(2):
        z = [F.normalize(F.linear(embeddings[s, v], *loss.head_), dim=0) for v in range(4)]
        negs = list(loss.negatives_)
        per_view = []
        for i in range(4):
            positives = [float(z[i] @ z[j]) for j in range(4) if j != i]
            candidates = positives + [float(z[i] @ n) for n in negs]
            scale = 1 / tau if scope == "all" else 1.0
            lse = math.log(sum(math.exp(c * scale) for c in candidates))
            per_view.append(-sum(p / tau for p in positives) / len(positives) + lse)
        assert got[s].item() == pytest.approx(sum(per_view) / 4, rel=1e-10)


def test_simclr_negatives_are_a_seeded_choice_of_training_samples():
    images = [torch.full((3, 16, 16), i / 10) for i in range(10)]
    seen = {}

    def encode(_loss, batch, n_views):
        seen["batch"] = batch
        return torch.zeros(len(batch), 4, 8, dtype=torch.float64)

    chosen = SimCLRLoss(grid_size=2, n_negatives=4).fit(context(encode=encode, images=images)).negative_indices_
    again = SimCLRLoss(grid_size=2, n_negatives=4).fit(context(encode=encode, images=images)).negative_indices_
    other = SimCLRLoss(grid_size=2, n_negatives=4).fit(context(seed=1, encode=encode, images=images))
    assert list(chosen) == list(again) and list(chosen) != list(other.negative_indices_)
    assert len(seen["batch"]) == 4


def test_loss_parameters_are_validated():
    with pytest.raises(ValueError, match="temperature_scope"):
        SimCLRLoss(temperature_scope="bogus").fit(context(encode=None))
    with pytest.raises(ValueError, match="n_global_crops"):
        DINOLoss(n_global_crops=0).fit(context())
    with pytest.raises(ValueError, match="unknown loss 'mae'"):
        make_loss("mae")


def test_loss_objects_are_sklearn_parameter_holders():
    loss = SimCLRLoss(temperature=0.2)
    assert loss.get_params()["temperature"] == 0.2
    assert loss.set_params(latent_dim=32).latent_dim == 32
    assert repr(KLLoss()) == "KLLoss()"
