"""mean_view_embeddings: the no-gradient control, checked against a plain one-view-at-a-time loop."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from skfungi import FungiTransformer
from skfungi._core.seeding import derive_seed, generator
from skfungi._core.view_embeddings import mean_view_embeddings
from skfungi.backbones import frozen_eval
from skfungi.losses import DINOLoss, SimCLRLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted():
    from conftest import tiny_cnn

    from skfungi import ImageBackbone

    images = np.random.default_rng(1).integers(0, 256, size=(7, 20, 20, 3), dtype=np.uint8)
    losses = (DINOLoss(n_local_crops=3, latent_dim=16), SimCLRLoss(grid_size=3, n_negatives=2), "kl")
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)
    fungi = FungiTransformer(backbone, losses=losses, random_state=3, batch_size=4).fit(images)
    return fungi, images


def loop_mean(fungi, image, loss_name):
    """Each view of one image built from its seed and encoded alone, then averaged."""
    backbone = fungi.backbone_
    loss = next(fitted_loss for fitted_loss in fungi.losses_ if fitted_loss.name == loss_name)
    sample = backbone.canonical(backbone.as_samples(image[None], estimator=fungi, reset=False)[0], 0)
    seed = derive_seed(fungi.seed_, "views", loss_name, backbone.sample_key(sample))
    views = [view for group in loss.views(sample, backbone, generator(seed)) for view in group]
    with frozen_eval(backbone.module), torch.no_grad():
        embeddings = [backbone.encode([view])[0] for view in views]
    return torch.stack(embeddings).mean(dim=0)


@pytest.mark.parametrize("loss_name", ["dino", "simclr", "kl"])
def test_mean_view_embeddings_match_a_plain_loop(fitted, loss_name):
    fungi, images = fitted
    got = mean_view_embeddings(fungi, images, loss_name, normalize=False)
    expected = torch.stack([loop_mean(fungi, image, loss_name) for image in images]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    normalised = mean_view_embeddings(fungi, images, loss_name)
    np.testing.assert_allclose(normalised, F.normalize(torch.from_numpy(expected), dim=1).numpy(), atol=1e-5)


def test_views_differ_between_losses_and_from_the_embedding(fitted):
    fungi, images = fitted
    embedding = fungi.transform(images)[:, : fungi.embedding_dim_]
    dino = mean_view_embeddings(fungi, images, "dino")
    simclr = mean_view_embeddings(fungi, images, "simclr")
    np.testing.assert_allclose(mean_view_embeddings(fungi, images, "kl"), embedding, atol=1e-5)
    assert not np.allclose(dino, simclr, atol=1e-3)
    assert not np.allclose(dino, embedding, atol=1e-3)


def test_unknown_loss_is_named(fitted):
    fungi, images = fitted
    with pytest.raises(ValueError, match=r"no 'dino' loss.*\['kl'\]"):
        mean_view_embeddings(
            FungiTransformer(fungi.backbone, losses=("kl",), random_state=0).fit(images), images, "dino"
        )
