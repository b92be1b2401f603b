"""FUNGI features as table columns: ColumnTransformer inputs, feature names, grids, persistence, bad columns."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import WORDS, tiny_cnn
from PIL import Image
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from test_audio import make_clips
from test_audio import tiny_backbone as tiny_audio_backbone

from skfungi import FungiBlockSelector, FungiTransformer, ImageBackbone
from skfungi.backbones import infer_modality
from skfungi.backbones.tabular import TabularMLP
from skfungi.losses import KLLoss, SimCLRLoss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_SIMCLR = SimCLRLoss(n_views=3, n_negatives=6, negative_views=1)


def image_fungi(losses=("kl",)):
    return FungiTransformer(ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12), losses=losses, random_state=0)


def make_images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(14 + i % 3, 16, 3), dtype=np.uint8) for i in range(n)]


def make_texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=3 + i % 4)) for i in range(n)]


def reviews_table(n=36, seed=0):
    """Texts whose words carry the label, plus two numeric columns (one informative), on a shuffled index."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    vocabularies = (WORDS[:10], WORDS[10:])
    texts = [" ".join(rng.choice(vocabularies[label], size=4)) for label in y]
    table = pd.DataFrame(
        {"review": texts, "price": rng.normal(size=n) + 1.5 * y, "stock": rng.normal(size=n)},
        index=rng.permutation(np.arange(1000, 1000 + n)),
    )
    return table, y


def text_fungi(bert_dir, losses=("kl",)):
    return FungiTransformer(f"hf:{bert_dir}", losses=losses, random_state=0)


# -- part 1: column inputs ------------------------------------------------------------


def _object_array(values):
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


COLUMN_FORMS = {
    "series": lambda values: pd.Series(values, index=np.arange(len(values)) * 7, name="col"),
    "frame": lambda values: pd.DataFrame({"col": pd.Series(values, dtype=object)}),
    "object-n-by-1": lambda values: _object_array(values).reshape(-1, 1),
    "object-1d": _object_array,
}


@pytest.mark.parametrize("form", COLUMN_FORMS, ids=list(COLUMN_FORMS))
@pytest.mark.parametrize("modality", ["image", "text", "audio"])
def test_column_forms_give_the_features_of_the_plain_list(modality, form, bert_dir):
    if modality == "image":
        values, fungi = make_images(5), image_fungi()
    elif modality == "text":
        values, fungi = make_texts(5), text_fungi(bert_dir)
    else:
        values = make_clips()[:5]
        fungi = FungiTransformer(tiny_audio_backbone(), losses=("kl",), random_state=0)
    expected = fungi.fit_transform(values)
    column = COLUMN_FORMS[form](values)
    np.testing.assert_array_equal(fungi.fit(column).transform(column), expected)
    np.testing.assert_array_equal(fungi.transform(values), expected)  # fitted on a column, given a list
    assert getattr(fungi, "n_features_in_", None) == (1 if form in ("frame", "object-n-by-1") else None)


def test_one_column_dataframe_is_a_one_feature_table_for_a_tabular_backbone():
    rows = pd.DataFrame({"height": np.linspace(0.0, 1.0, 12)})
    fungi = FungiTransformer(TabularMLP(hidden=(8,), embedding_dim=4), losses=("kl",), random_state=0).fit(rows)
    assert fungi.n_features_in_ == 1 and fungi.feature_names_in_.tolist() == ["height"]
    assert fungi.backbone_.n_features == 1
    assert fungi.transform(rows).shape == (12, 8)


def test_a_dataframe_column_name_is_recorded_and_checked(bert_dir):
    table, _ = reviews_table(8)
    fungi = text_fungi(bert_dir).fit(table[["review"]])
    assert fungi.feature_names_in_.tolist() == ["review"] and fungi.n_features_in_ == 1
    with pytest.raises(ValueError, match="X's column is 'title', but FungiTransformer was fitted on column 'review'"):
        fungi.transform(table[["review"]].rename(columns={"review": "title"}))
    np.testing.assert_array_equal(fungi.transform(table["review"]), fungi.transform(table[["review"]]))
    fungi.fit(table["review"].tolist())  # a refit on a list forgets the column
    assert not hasattr(fungi, "feature_names_in_") and not hasattr(fungi, "n_features_in_")


def test_modality_is_inferred_from_a_column_of_values():
    images = pd.Series(make_images(4))
    fungi = FungiTransformer(tiny_cnn(), losses=("kl",), layer="pointwise", random_state=0).fit(images)
    assert fungi.modality_ == "image"
    clips = pd.DataFrame({"clip": pd.Series(make_clips()[:4], dtype=object)})
    assert infer_modality(clips) == "audio"
    assert infer_modality(pd.DataFrame({"x": [1.0, 2.0]})) == "tabular"
    assert infer_modality(np.array([["a cat"], [None], ["a dog"]], dtype=object)) == "text"


def test_feature_names_through_a_column_transformer_are_prefixed_unique_and_stable(bert_dir):
    table, _ = reviews_table(10)
    table["photo"] = make_images(10)
    columns = ColumnTransformer(
        [
            ("review", text_fungi(bert_dir, losses=("kl", SMALL_SIMCLR)), "review"),
            ("photo", image_fungi(), ["photo"]),
            ("numbers", StandardScaler(), ["price", "stock"]),
        ]
    )
    matrix = columns.fit_transform(table)
    names = columns.get_feature_names_out()
    review, photo = columns.named_transformers_["review"], columns.named_transformers_["photo"]
    expected = np.concatenate(
        [
            ["review__" + name for name in review.get_feature_names_out()],
            ["photo__" + name for name in photo.get_feature_names_out()],
            ["numbers__price", "numbers__stock"],
        ]
    )
    assert names.tolist() == expected.tolist() and len(set(names)) == len(names) == matrix.shape[1]
    assert names[0] == "review__embedding0" and "review__simclr0" in names and "photo__kl0" in names
    frame = columns.set_output(transform="pandas").fit_transform(table)
    assert frame.columns.tolist() == names.tolist()  # the same names after a refit
    assert frame.index.equals(table.index)
    np.testing.assert_allclose(frame.to_numpy(), matrix, rtol=1e-6, atol=1e-7)


# -- part 2: end-to-end examples ---------------------------------------------------------


def test_text_column_beside_numeric_columns_cross_validated(bert_dir, extracted_rows):
    table, y = reviews_table()
    model = make_pipeline(
        ColumnTransformer(
            [
                ("review", text_fungi(bert_dir, losses=("kl", SMALL_SIMCLR)), "review"),
                ("numbers", StandardScaler(), ["price", "stock"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    scores = cross_val_score(model, table, y, cv=StratifiedKFold(3, shuffle=True, random_state=0))
    assert scores.shape == (3,) and np.all(scores > 0.5)  # the words and the price carry the label
    assert extracted_rows["rows"] == 3 * len(table)  # each fold: its train rows, then its test rows
    fitted = model.fit(table, y)
    assert fitted[-1].coef_.shape == (1, 16 * 3 + 2)  # embedding + KL + SimCLR blocks, then 2 numbers


@pytest.mark.parametrize("as_paths", [False, True], ids=["arrays", "paths"])
def test_image_column_beside_numeric_columns_into_gradient_boosting(tmp_path, as_paths):
    n = 24
    rng = np.random.default_rng(1)
    y = np.arange(n) % 2
    images = [rng.integers(0, 100, size=(16, 16, 3), dtype=np.uint8) + np.uint8(120 * label) for label in y]
    arrays = images
    if as_paths:
        paths = [tmp_path / f"image{i}.png" for i in range(n)]
        for path, image in zip(paths, arrays, strict=True):
            Image.fromarray(image).save(path)
        images = [str(path) for path in paths]
    table = pd.DataFrame({"photo": images, "weight": rng.normal(size=n), "age": rng.normal(size=n)})
    model = make_pipeline(
        ColumnTransformer([("photo", image_fungi(), "photo")], remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=20, min_samples_leaf=3, random_state=0),
    )
    model.fit(table, y)
    assert model.score(table, y) > 0.9
    features = model[0].named_transformers_["photo"].transform(table["photo"])
    np.testing.assert_array_equal(features, image_fungi().fit_transform(arrays))  # PNG is lossless


def test_grid_over_fungi_losses_and_classifier_extracts_every_row_once(bert_dir, extracted_rows):
    table, y = reviews_table()
    losses = ("kl", SMALL_SIMCLR)
    # Extract every loss block once; FUNGI's fit sees no labels, the other columns pass through unchanged.
    extraction = ColumnTransformer(
        [("review", text_fungi(bert_dir, losses=losses), "review")], remainder="passthrough"
    ).set_output(transform="pandas")
    features = extraction.fit_transform(table)
    assert extracted_rows["rows"] == len(table)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("review", FungiBlockSelector(), make_column_selector(pattern="^review__")),
                ("numbers", StandardScaler(), make_column_selector(pattern="^remainder__")),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    grid = {
        "columntransformer__review__blocks": [("embedding",), ("embedding", "kl"), ("embedding", "kl", "simclr")],
        "logisticregression__C": [0.1, 1.0],
    }
    search = GridSearchCV(model, grid, cv=3).fit(features, y)
    assert extracted_rows["rows"] == len(table)  # 6 candidates x 3 folds + refit: no further extraction
    assert len(search.cv_results_["params"]) == 6
    best_blocks = search.best_params_["columntransformer__review__blocks"]
    kept = search.best_estimator_[0].get_feature_names_out()
    assert next(name for name in kept if name.startswith("review__")) == "review__review__embedding0"
    assert len(kept) == 16 * len(best_blocks) + 2
    # The selected KL block is the one a KL-only extraction gives.
    kl_only = text_fungi(bert_dir, losses=("kl",)).fit(table["review"]).transform(table["review"])
    selector = FungiBlockSelector(blocks=("kl",)).fit(features.filter(like="review__"))
    np.testing.assert_allclose(selector.transform(features.filter(like="review__")), kl_only[:, 16:], atol=1e-6)


def test_the_naive_grid_over_losses_extracts_once_per_candidate_and_fold(bert_dir, extracted_rows):
    table, y = reviews_table(18)
    model = make_pipeline(
        ColumnTransformer([("review", text_fungi(bert_dir), "review")], remainder="passthrough"),
        LogisticRegression(max_iter=1000),
    )
    grid = {"columntransformer__review__losses": [("kl",), ("kl", SMALL_SIMCLR)]}
    GridSearchCV(model, grid, cv=3).fit(table, y)
    assert extracted_rows["rows"] == 2 * 3 * len(table) + len(table)  # train + test rows per candidate and fold


def test_block_selector_matches_prefixed_blocks():
    names = ["text__embedding0", "text__kl0", "photo__embedding0", "photo__kl0", "photo__kl1"]
    features = np.arange(10, dtype=np.float32).reshape(2, 5)
    kl = FungiBlockSelector(blocks=("kl",), feature_names=names).fit(features)
    assert kl.get_feature_names_out().tolist() == ["text__kl0", "photo__kl0", "photo__kl1"]
    photo = FungiBlockSelector(blocks=("photo__kl", "text__embedding"), feature_names=names).fit(features)
    np.testing.assert_array_equal(photo.transform(features), features[:, [3, 4, 0]])
    with pytest.raises(ValueError, match=r"blocks \['photo__kl'\] are requested more than once"):
        FungiBlockSelector(blocks=("kl", "photo__kl"), feature_names=names).fit(features)
    with pytest.raises(ValueError, match=r"blocks \['dino'\] not found"):
        FungiBlockSelector(blocks=("dino",), feature_names=names).fit(features)


# -- part 4: persistence --------------------------------------------------------------------


def test_fitted_pipeline_round_trips_through_joblib_in_a_fresh_process(bert_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(bert_dir, model_dir)
    table, y = reviews_table(24)
    losses = (KLLoss(latent_dim=32), SMALL_SIMCLR)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("review", FungiTransformer(f"hf:{model_dir}", losses=losses, random_state=0), "review"),
                ("numbers", StandardScaler(), ["price", "stock"]),
            ]
        ),
        LogisticRegression(max_iter=1000),
    ).fit(table, y)
    expected = model.predict_proba(table)
    joblib.dump(model, tmp_path / "model.joblib")
    table.to_pickle(tmp_path / "table.pkl")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict_proba(table), expected)
    shutil.rmtree(model_dir)  # the spec's directory is gone: loading must not re-resolve the backbone
    script = textwrap.dedent(
        f"""
        import joblib, numpy as np, pandas as pd
        model = joblib.load({str(tmp_path / "model.joblib")!r})
        np.save({str(tmp_path / "loaded.npy")!r}, model.predict_proba(pd.read_pickle({str(tmp_path / "table.pkl")!r})))
        """
    )
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", script], check=True, env=environment)
    np.testing.assert_array_equal(np.load(tmp_path / "loaded.npy"), expected)


def test_image_pipeline_round_trips_through_joblib(tmp_path):
    table = pd.DataFrame({"photo": make_images(12), "weight": np.linspace(0, 1, 12)})
    y = np.arange(12) % 2
    model = make_pipeline(
        ColumnTransformer([("photo", image_fungi(), "photo")], remainder="passthrough"),
        HistGradientBoostingClassifier(max_iter=5, min_samples_leaf=2, random_state=0),
    ).fit(table, y)
    joblib.dump(model, tmp_path / "model.joblib")
    np.testing.assert_array_equal(
        joblib.load(tmp_path / "model.joblib").predict_proba(table), model.predict_proba(table)
    )


# -- bad columns ------------------------------------------------------------------------------


@pytest.mark.parametrize("hole", [None, np.nan, pd.NA, ""], ids=["None", "nan", "NA", "empty-path"])
def test_missing_images_are_refused_naming_the_rows(hole):
    photos = pd.Series([*make_images(5), "a.png"], index=[10, 11, 12, 13, 14, 15], name="photo", dtype=object)
    photos[12] = hole
    photos[15] = hole
    with pytest.raises(
        ValueError, match=r"Column 'photo' has missing values at row\(s\) 2, 5 \(index label\(s\) 12, 15\)"
    ):
        image_fungi().fit(photos)


def test_missing_texts_are_refused_naming_the_rows_and_empty_texts_are_valid(bert_dir):
    table, _ = reviews_table(6)
    reviews = table["review"].reset_index(drop=True).astype(object)
    reviews[4] = None
    with pytest.raises(ValueError, match=r"Column 'review' has missing values at row\(s\) 4: None"):
        text_fungi(bert_dir).fit(reviews)
    reviews[4] = ""
    assert text_fungi(bert_dir).fit(reviews.to_frame()).transform(reviews).shape == (6, 32)
    fitted = text_fungi(bert_dir).fit(table["review"])
    with pytest.raises(ValueError, match=r"missing values at row\(s\) 0, 1 \(index label\(s\)"):
        fitted.transform(pd.Series([np.nan, pd.NA], index=[5, 6]))


def test_missing_texts_filled_by_an_imputer_in_front_of_fungi(bert_dir):
    table, _ = reviews_table(6)
    holes = table[["review"]].copy()
    holes.iloc[[1, 4], 0] = np.nan  # a missing value of a pandas text column
    filled = make_pipeline(SimpleImputer(strategy="constant", fill_value=""), text_fungi(bert_dir)).fit(holes)
    expected = table["review"].tolist()
    expected[1] = expected[4] = ""
    np.testing.assert_array_equal(filled.transform(holes), text_fungi(bert_dir).fit(expected).transform(expected))


def test_mixed_kinds_in_one_column_are_refused(bert_dir):
    photos = pd.Series([*make_images(3), "b.png"], name="photo")
    with pytest.raises(ValueError, match=r"Column 'photo' mixes kinds of values: numpy array at row\(s\) 0, 1, 2; "):
        image_fungi().fit(photos)
    texts = np.array([["a cat"], [3], ["a dog"]], dtype=object)
    with pytest.raises(ValueError, match=r"X mixes kinds of values: str/path at row\(s\) 0, 2; number at row\(s\) 1"):
        text_fungi(bert_dir).fit(texts)
    clips = make_clips()[:3]
    with pytest.raises(ValueError, match="torch tensor at row"):
        FungiTransformer(tiny_audio_backbone(), losses=("kl",)).fit(pd.Series([*clips[:2], torch.from_numpy(clips[2])]))


def test_several_columns_are_refused_by_a_non_tabular_backbone(bert_dir):
    table, _ = reviews_table(4)
    with pytest.raises(ValueError, match=r"DataFrame with 3 columns \['review', 'price', 'stock'\]; a text backbone"):
        text_fungi(bert_dir).fit(table)
    with pytest.raises(ValueError, match=r"shape \(4, 2\); an image backbone takes one column"):
        image_fungi().fit(np.array([[p, p] for p in ["a.png"] * 4], dtype=object))
