"""ViewAverage blocks ("dino_views", "simclr_views"): the mean embedding of a loss's views, no gradient,
checked against a plain one-view-at-a-time loop with the loss's own seeds."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cnn
from sklearn.base import clone
from sklearn.utils._param_validation import InvalidParameterError

from skfungi import FungiTransformer, ImageBackbone
from skfungi._utils.seeding import derive_seed, generator
from skfungi.backbones import frozen_eval
from skfungi.losses import DINOLoss, SimCLRLoss, ViewAverage, make_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DINO = DINOLoss(n_local_crops=3, latent_dim=16)
SIMCLR = SimCLRLoss(grid_size=3, n_negatives=2)


@pytest.fixture(scope="module")
def fitted():
    images = np.random.default_rng(1).integers(0, 256, size=(7, 20, 20, 3), dtype=np.uint8)
    losses = (DINO, SIMCLR, "kl", ViewAverage(DINO), ViewAverage(SIMCLR), "kl_views")
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)
    fungi = FungiTransformer(backbone, losses=losses, random_state=3, batch_size=4).fit(images)
    return fungi, images


def loop_mean(fungi, image, loss):
    """Each view of one image built from the loss's seed and encoded alone, then averaged."""
    backbone = fungi.backbone_
    sample = torch.from_numpy(image).permute(2, 0, 1) / 255.0
    seed = derive_seed(fungi.seed_, "views", loss.name, backbone.sample_key(sample))
    views = [view for group in loss.views(sample, backbone, generator(seed)) for view in group]
    with frozen_eval(backbone.module), torch.no_grad():
        embeddings = [backbone.embed([view])[0] for view in views]
    return torch.stack(embeddings).mean(dim=0)


def block(fungi, features, name):
    names = fungi.get_feature_names_out()
    return features[:, [index for index, feature in enumerate(names) if feature.rstrip("0123456789") == name]]


@pytest.mark.parametrize("name", ["dino", "simclr", "kl"])
def test_a_view_average_is_the_normalised_mean_of_the_losss_own_views(fitted, name):
    fungi, images = fitted
    loss = next(loss for loss in fungi.losses_ if loss.name == name)
    features = fungi.transform(images)
    expected = F.normalize(torch.stack([loop_mean(fungi, image, loss) for image in images]), dim=1)
    np.testing.assert_allclose(block(fungi, features, f"{name}_views"), expected.numpy(), atol=1e-5)


def test_view_averages_are_named_and_as_wide_as_the_embedding(fitted):
    fungi, images = fitted
    features = fungi.transform(images)
    width = fungi.embedding_dim_
    assert [block.name for block in fungi.blocks_][3:] == ["dino_views", "simclr_views", "kl_views"]
    assert [loss.name for loss in fungi.losses_] == ["dino", "simclr", "kl"]  # a view average is not a loss
    assert block(fungi, features, "dino_views").shape == (7, width)
    np.testing.assert_allclose(block(fungi, features, "kl_views"), features[:, :width], atol=1e-6)  # its one view


def test_names_give_the_presets_views():
    assert make_loss("dino_views", "fast").loss.local_crop_size == 0.43
    assert make_loss("simclr_views").loss.grid_size == 7
    with pytest.raises(ValueError, match="unknown loss 'mae_views'"):
        make_loss("mae_views")
    assert clone(ViewAverage("simclr")).name == "simclr_views"


def test_a_view_average_alone_needs_no_gradient_and_no_bank(images):
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)
    fungi = FungiTransformer(backbone, losses=("simclr_views",), random_state=0).fit(images)
    (average,) = fungi.blocks_
    assert fungi.losses_ == [] and fungi.layer_ is None
    assert not average.needs_gradient and not hasattr(average.loss_, "negatives_")
    with torch.autograd.set_grad_enabled(False):  # no backward is needed anywhere
        assert fungi.transform(images).shape == (len(images), 2 * fungi.embedding_dim_)


def test_a_view_average_of_a_view_average_is_refused_at_fit(images):
    nested = ViewAverage(ViewAverage("simclr"))  # accepted here: __init__ only stores it, as scikit-learn's do
    backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)
    message = (
        r"The 'loss' parameter of ViewAverage must be .*instance of .*FungiLoss.* Got ViewAverage\(loss='simclr'\)"
    )
    with pytest.raises(InvalidParameterError, match=message):
        FungiTransformer(backbone, losses=(nested,), random_state=0).fit(images)
