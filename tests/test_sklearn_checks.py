"""scikit-learn's own estimator checks, on the tabular path (the one that accepts 2-D arrays).

scikit-learn skips every check for estimators that do not take 2-D arrays, so
the image, text and audio paths are covered by their own tests instead.
:class:`~skfungi.backbones.tabular.TabularMLP` builds its MLP for whatever
number of features a check fits on.
"""

from __future__ import annotations

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from skfungi import FungiTransformer
from skfungi.backbones.tabular import TabularMLP

pytestmark = pytest.mark.usefixtures("one_torch_thread")


ESTIMATORS = [
    FungiTransformer(
        TabularMLP(hidden=(16,), embedding_dim=8), modality="tabular", losses=("kl", "simclr"), random_state=0
    ),
]


def expected_failed_checks(estimator) -> dict[str, str]:
    return {}  # none: every check passes


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
