"""skfungi.monitoring: the progress reports count the rows a transform extracts, and every stage a
transform runs shows in a torch.profiler trace under its public label."""

from __future__ import annotations

import pytest
from torch.profiler import ProfilerActivity, profile

from skfungi import DINOLoss, FungiTransformer, SimCLRLoss
from skfungi.monitoring import PROFILER_LABELS, progress_listener

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fungi(cnn_backbone, images):
    losses = ("kl", DINOLoss(latent_dim=8, n_local_crops=1), SimCLRLoss(grid_size=2, n_negatives=2))
    return FungiTransformer(cnn_backbone, losses=losses, batch_size=4, random_state=0).fit(images)


def test_transform_reports_one_row_per_sample_and_fit_reports_none(fungi, cnn_backbone, images):
    reports = []
    with progress_listener(lambda stage, n_samples: reports.append((stage, n_samples))):
        fungi.transform(images)
        fungi.transform(images[:2])
        FungiTransformer(cnn_backbone, losses=("kl",), random_state=0).fit(images)
    assert sum(n for stage, n in reports if stage == "transform") == len(images) + 2


def test_every_stage_of_a_transform_shows_under_its_label(fungi, images):
    with profile(activities=[ProfilerActivity.CPU]) as trace:
        fungi.transform(images)
    recorded = {event.key for event in trace.key_averages()}
    assert set(PROFILER_LABELS.values()) <= recorded


def test_the_labels_are_read_only():
    with pytest.raises(TypeError):
        PROFILER_LABELS["forward"] = "mine"


@pytest.mark.parametrize("callback", [5, "print", None])
def test_a_callback_that_cannot_be_called_is_refused_on_entry(callback):
    """A non-callable callback was accepted, then failed in the middle of a transform ("'int' object is not
    callable"), naming neither progress_listener nor its argument."""
    with pytest.raises(TypeError, match="progress_listener's callback must be a function of"):
        with progress_listener(callback):
            pass
