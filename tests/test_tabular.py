"""Tabular rows through an MLP: invariances, gradients, sklearn glue, DataFrames, bad input."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import torch
import torch.nn as nn
from conftest import engine_gradients, reference_gradient
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skfungi import FungiTransformer, KLLoss, SimCLRLoss
from skfungi.backbones.tabular import TabularBackbone, TabularMLP, make_mlp_encoder

SMALL_LOSSES = ("kl", SimCLRLoss(n_views=4, latent_dim=16, n_negatives=8))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def rows():
    """30 rows of 5 features in very different units, plus a constant feature."""
    X = np.random.default_rng(0).normal(size=(30, 5)) * [1.0, 10.0, 0.1, 1000.0, 1.0]
    X[:, 4] = 3.0
    return X


def make_fungi(backbone=None, **params):
    backbone = TabularMLP(hidden=(16,), embedding_dim=8) if backbone is None else backbone
    return FungiTransformer(backbone, **{"losses": SMALL_LOSSES, "random_state": 0, "batch_size": 4, **params})


# -- invariances ----------------------------------------------------------------


def test_a_row_alone_equals_the_same_row_inside_a_shuffled_batch(rows):
    fungi = make_fungi(losses=("kl", "simclr"), batch_size=5).fit(rows)
    order = [7, 3, 0, 12, 5, 21]
    batch = fungi.transform(rows[order])
    for position, index in enumerate(order):
        np.testing.assert_allclose(fungi.transform(rows[index : index + 1])[0], batch[position], atol=1e-5)
    other = clone(fungi).set_params(batch_size=2).fit(rows).transform(rows[order])
    np.testing.assert_allclose(other, batch, atol=1e-5)


def test_float32_user_module_is_batch_invariant_to_float32_precision(rows):
    net = make_mlp_encoder(5, hidden=(16,), embedding_dim=8)
    fungi = FungiTransformer(net, losses=("kl", "simclr"), random_state=0, batch_size=5).fit(rows)
    batch = fungi.transform(rows[::-1])
    alone = np.concatenate([fungi.transform(rows[i : i + 1]) for i in range(len(rows))])[::-1]
    # KL at temperature 15 subtracts a near-uniform softmax from the uniform target: in float32 it
    # keeps ~4 significant digits, so batch-shape rounding shows at ~1e-5 (float64 is exact).
    np.testing.assert_allclose(alone, batch, atol=1e-4)


def test_same_random_state_same_features_different_random_state_different(rows):
    first = make_fungi().fit_transform(rows)
    np.testing.assert_array_equal(make_fungi().fit_transform(rows), first)
    assert not np.allclose(make_fungi(random_state=1).fit_transform(rows), first)
    other_mlp = make_fungi(TabularMLP(hidden=(16,), embedding_dim=8, random_state=1)).fit_transform(rows)
    assert not np.allclose(other_mlp[:, :8], first[:, :8])


def test_make_mlp_encoder_is_seeded_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    first, second = make_mlp_encoder(4, (8, 8), 3, random_state=5), make_mlp_encoder(4, (8, 8), 3, random_state=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(make_mlp_encoder(4, (8, 8), 3, random_state=6).output.weight, first.output.weight)
    assert [name for name, _ in first.named_children()] == [
        "hidden0",
        "activation0",
        "hidden1",
        "activation1",
        "output",
    ]
    bound = 1 / np.sqrt(8)
    assert float(first.output.weight.detach().abs().max()) <= bound


# -- per-sample gradients ---------------------------------------------------------


def float64_backbones():
    return {
        "user-module": lambda: TabularBackbone(make_mlp_encoder(5, (12, 12), 6, dtype=torch.float64)),
        "tabular-mlp-standardized": lambda: TabularMLP(hidden=(12,), embedding_dim=6),
    }


@pytest.mark.parametrize("backbone_name", list(float64_backbones()))
@pytest.mark.parametrize("loss", [KLLoss(), SimCLRLoss(latent_dim=16, n_negatives=10)], ids=lambda loss: loss.name)
def test_per_sample_gradients_match_autograd_loop(backbone_name, loss, rows):
    fungi = FungiTransformer(float64_backbones()[backbone_name](), losses=(loss,), random_state=3, batch_size=20)
    fungi.fit(rows)
    fitted = fungi.losses_[0]
    samples = fungi.backbone_.as_samples(rows[:6], estimator=fungi, reset=False)
    batch = [fungi.backbone_.canonical(samples[i], i) for i in range(len(samples))]
    fast = engine_gradients(fungi, fitted, batch)
    assert fast.shape[1:] == (6, 13)  # output layer: 6 x (12 + bias)
    for index, row in enumerate(batch):
        slow = reference_gradient(fungi, fitted, row)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-9, atol=1e-12)


def test_features_equal_projected_reference_gradients(rows):
    fungi = FungiTransformer(TabularMLP(hidden=(12,), embedding_dim=6), losses=SMALL_LOSSES, random_state=1).fit(rows)
    features = fungi.transform(rows[:4])
    matrix = fungi.projection_.matrix().double()
    samples = fungi.backbone_.as_samples(rows[:4], estimator=fungi, reset=False)
    for index in range(4):
        for block, loss in enumerate(fungi.losses_, start=1):
            projected = matrix @ reference_gradient(fungi, loss, samples[index]).flatten()
            expected = torch.nn.functional.normalize(projected, dim=0).numpy()
            np.testing.assert_allclose(features[index, block * 6 : (block + 1) * 6], expected, atol=1e-6)


# -- fitted state: feature scale, the user's objects --------------------------------


def test_feature_scale_is_measured_in_fit_and_kept_at_transform(rows):
    fungi = make_fungi().fit(rows)
    expected = rows.std(axis=0)
    expected[4] = 1.0  # the constant feature
    np.testing.assert_allclose(fungi.backbone_.feature_scale.numpy(), expected)
    np.testing.assert_allclose(fungi.backbone_.feature_mean.numpy(), rows.mean(axis=0), atol=1e-12)
    before = fungi.transform(rows[:3])
    fungi.transform(rows * 100.0)
    np.testing.assert_allclose(fungi.backbone_.feature_scale.numpy(), expected)
    np.testing.assert_array_equal(fungi.transform(rows[:3]), before)


def test_the_users_adapter_and_module_are_never_modified(rows):
    net = make_mlp_encoder(5, (8,), 4)
    net.train()
    state = {name: value.clone() for name, value in net.state_dict().items()}
    adapter = TabularBackbone(net)
    mlp = TabularMLP(hidden=(8,), embedding_dim=4)
    for backbone in (adapter, mlp):
        first = make_fungi(backbone).fit(rows)
        second = clone(first).fit(rows[:, [0, 1, 2, 3, 3]] * 7.0)  # a clone shares the backbone
        assert first.backbone_ is not backbone and first.backbone_ is not second.backbone_
        assert not torch.equal(first.backbone_.feature_scale, second.backbone_.feature_scale)
    assert adapter.n_features is None and mlp.module is None and mlp.n_features is None
    assert net.training and all(param.requires_grad for param in net.parameters())
    for name, value in net.state_dict().items():
        assert torch.equal(value, state[name]), name


def test_a_plain_module_on_2d_rows_gets_the_tabular_adapter(rows):
    net = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 6))
    fungi = FungiTransformer(net, losses=("kl",), random_state=0).fit(rows)
    assert isinstance(fungi.backbone_, TabularBackbone) and fungi.modality_ == "tabular"
    assert fungi.layer_ == "4" and fungi.gradient_shape_ == (6, 9)
    assert fungi.transform(rows).shape == (30, 12)


def test_a_module_without_linear_layer_needs_a_layer(rows):
    with pytest.raises(ValueError, match="no default target layer"):
        FungiTransformer(nn.Sequential(nn.Tanh()), modality="tabular").fit(rows)


# -- scikit-learn glue -----------------------------------------------------------


def test_grid_search_over_losses_in_a_pipeline():
    X, y = make_classification(n_samples=60, n_features=6, n_informative=4, random_state=0)
    mlp = TabularMLP(hidden=(16,), embedding_dim=8)
    pipe = make_pipeline(make_fungi(mlp), LogisticRegression(max_iter=500))
    grid = GridSearchCV(pipe, {"fungitransformer__losses": [(), ("kl",), SMALL_LOSSES]}, cv=2).fit(X, y)
    assert len(grid.cv_results_["params"]) == 3
    assert grid.predict(X).shape == (60,)
    widths = {len(losses): 8 * (1 + len(losses)) for losses in [(), ("kl",), SMALL_LOSSES]}
    assert grid.best_estimator_[0].n_features_out_ == widths[len(grid.best_params_["fungitransformer__losses"])]
    assert mlp.module is None


def test_pickle_and_joblib_round_trip(rows, tmp_path):
    fungi = make_fungi().fit(rows)
    expected = fungi.transform(rows)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fungi)).transform(rows), expected)
    joblib.dump(fungi, tmp_path / "fungi.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "fungi.joblib").transform(rows), expected)


def test_dataframe_input_feature_names_and_pandas_output(rows):
    frame = pd.DataFrame(rows, columns=["age", "income", "ratio", "area", "flag"], index=range(100, 130))
    fungi = make_fungi().fit(frame)
    assert fungi.n_features_in_ == 5 and list(fungi.feature_names_in_) == list(frame.columns)
    names = fungi.get_feature_names_out()
    assert list(names[[0, 8, 16]]) == ["embedding0", "kl0", "simclr0"] and len(names) == 24
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        np.testing.assert_array_equal(fungi.transform(frame), fungi.transform(rows))
    out = fungi.set_output(transform="pandas").transform(frame.iloc[:4])
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    assert list(out.index) == [100, 101, 102, 103]
    with pytest.raises(ValueError, match="feature names should match"):
        fungi.transform(frame[frame.columns[::-1]])


def test_numbers_in_object_arrays_and_ints_are_converted_as_sklearn_does(rows):
    fungi = make_fungi().fit(rows)
    np.testing.assert_array_equal(fungi.transform(rows.astype(object)), fungi.transform(rows))
    integers = np.arange(20).reshape(4, 5)
    np.testing.assert_array_equal(fungi.transform(integers), fungi.transform(integers.astype(np.float64)))
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5], "c": [True, False, True]}, dtype=object)
    assert make_fungi().fit_transform(frame).shape == (3, 24)


# -- bad input ------------------------------------------------------------------


def test_nan_is_refused_at_fit_and_transform(rows):
    bad = rows.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinite values \(first at sample 3, feature 2: nan\)"):
        make_fungi().fit(bad)
    with pytest.raises(ValueError, match="first at sample 3, feature 2"):
        make_fungi().fit(rows).transform(bad)


def test_infinite_values_and_missing_cells_of_a_dataframe_name_the_sample_and_the_column(rows):
    bad = rows.copy()
    bad[5, 1] = -np.inf
    with pytest.raises(ValueError, match=r"first at sample 5, feature 1: -inf"):
        make_fungi().fit(bad)
    frame = pd.DataFrame(rows.round(), columns=list("abcde")).astype("Int64")
    frame.loc[4, "d"] = pd.NA
    with pytest.raises(ValueError, match=r"first at sample 4, feature 'd'"):
        make_fungi().fit(frame)


def test_strings_are_refused_naming_where_they_are(rows):
    bad = rows.astype(object)
    bad[2, 3] = "high"
    with pytest.raises(ValueError, match=r"strings \(first at sample 2, feature 3: 'high'\).*OneHotEncoder"):
        make_fungi().fit(bad)
    frame = pd.DataFrame({"size": [1.0, 2.0, 3.0], "city": ["Oslo", "Rome", "Lima"]})
    with pytest.raises(ValueError, match=r"column\(s\) \['city'\] of X hold strings"):
        make_fungi().fit(frame)
    with pytest.raises(ValueError, match="strings"):
        make_fungi().fit([["a", "b"], ["c", "d"]])


def test_wrong_width_at_transform_is_sklearns_error(rows):
    fungi = make_fungi().fit(rows)
    with pytest.raises(ValueError, match="X has 3 features, but FungiTransformer is expecting 5 features"):
        fungi.transform(rows[:, :3])


def test_images_at_transform_are_refused(rows):
    fungi = make_fungi().fit(rows)
    images = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=re.escape("got an array of shape (2, 8, 8, 3); images need an image")):
        fungi.transform(images)
    with pytest.raises(ValueError, match="images need an image backbone"):
        fungi.transform(torch.zeros(2, 3, 8, 8))


def test_sparse_1d_and_empty_input_are_sklearns_errors(rows):
    fungi = make_fungi().fit(rows)
    with pytest.raises(TypeError, match="dense data is required"):
        fungi.transform(scipy.sparse.csr_matrix(rows))
    with pytest.raises(ValueError, match="Reshape your data"):
        fungi.transform(rows[0])
    with pytest.raises(ValueError, match="0 sample"):
        make_fungi().fit(rows[:0])


def test_a_module_of_another_width_is_a_clear_error(rows):
    with pytest.raises(ValueError, match=r"failed on rows of 5 features.*TabularMLP builds an MLP for any width"):
        FungiTransformer(make_mlp_encoder(7), losses=("kl",), modality="tabular").fit(rows)


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda: TabularBackbone("mlp"), TypeError, "'module' parameter of TabularBackbone must be an instance of"),
        (
            lambda: TabularBackbone(nn.Linear(2, 2), dtype=torch.int64),
            ValueError,
            "'dtype' parameter of TabularBackbone",
        ),
        (lambda: TabularMLP(hidden=(8, 0)), ValueError, "the widths in hidden must be positive ints"),
        (lambda: TabularMLP(hidden=8), TypeError, "'hidden' parameter of TabularMLP must be an instance of"),
        (lambda: TabularMLP(embedding_dim=0), ValueError, "'embedding_dim' parameter of TabularMLP must be an int"),
        (lambda: TabularMLP(random_state=-1), ValueError, "'random_state' parameter of TabularMLP must be an int"),
        (
            lambda: TabularMLP(standardize="yes"),
            TypeError,
            "'standardize' parameter of TabularMLP must be an instance of 'bool'",
        ),
    ],
)
def test_bad_adapter_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_adapter_statistics_before_fit_are_a_clear_error():
    with pytest.raises(RuntimeError, match=r"fitted by FungiTransformer\.fit"):
        _ = TabularMLP().feature_scale


# -- docs --------------------------------------------------------------------------


def test_docs_example_runs():
    text = (Path(__file__).parents[1] / "docs" / "tabular.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert blocks, "docs/tabular.md has no python example"
    exec(compile(blocks[0], "docs/tabular.md", "exec"), {})


def test_the_adapter_alone_validates_widths_without_an_estimator(rows):
    unfitted = TabularMLP(hidden=(4,), embedding_dim=3)
    samples = unfitted.as_samples(rows)
    mlp = unfitted.fit(samples)
    assert mlp is not unfitted and unfitted.module is None  # fit returns a fitted copy
    assert samples.shape == (30, 5) and samples.dtype == torch.float64 and mlp.embed(samples).shape == (30, 3)
    with pytest.raises(ValueError, match="X has 3 features, but the backbone was fitted on 5"):
        mlp.as_samples(rows[:, :3], reset=False)
    with pytest.raises(ValueError, match=r"sample 2 must be a 1-D row of 5 features, got \(4,\)"):
        mlp.canonical(torch.zeros(4), 2)
