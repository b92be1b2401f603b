"""skfungi.evaluation: blocks, controls, splits, verdicts, the report, its JSON and pairing two runs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.model_selection import StratifiedShuffleSplit

from skfungi import FungiTransformer, ImageBackbone
from skfungi.evaluation import (
    SCHEMA,
    Block,
    compare_runs,
    control_of,
    draw_splits,
    evaluate,
    extract_blocks,
    parse_feature_sets,
    plan_blocks,
    score_feature_sets,
    validate_report,
)
from skfungi.evaluation.report import TABLE_WIDTH
from skfungi.evaluation.verdict import GAIN, WITHIN, build_results, recommend
from skfungi.losses import DINOLoss, KLLoss, SimCLRLoss
from skfungi.protocols import evaluate_knn, feature_blocks

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# Small losses: the evaluation's code path at a fraction of the paper's view counts.
LOSSES = [KLLoss(latent_dim=8), DINOLoss(n_local_crops=2, latent_dim=8), SimCLRLoss(grid_size=2, latent_dim=8)]
BLOCKS = ["embedding", "kl", "dino", "simclr", "dino_views", "simclr_views"]


def tiny_data(n=48, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 120, size=(n, 14, 14, 3)).astype(np.uint8)
    images[..., 0] += (60 * labels).astype(np.uint8)[:, None, None]  # class-dependent red channel
    return images, labels


@pytest.fixture(scope="module")
def backbone():
    from conftest import tiny_cnn

    return ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)


@pytest.fixture(scope="module")
def report(backbone, tmp_path_factory):
    images, labels = tiny_data()
    folder = tmp_path_factory.mktemp("evaluation")
    return evaluate(backbone, images, labels, losses=LOSSES, fit_samples=6, splits=3, output_dir=folder,
                    protocols=("knn", "linear_probe"))  # fmt: skip


# -- blocks --------------------------------------------------------------------------------


def test_blocks_and_controls():
    assert list(plan_blocks(LOSSES)) == BLOCKS
    assert list(plan_blocks("auto", modality="text")) == ["embedding", "kl", "simclr", "simclr_views"]
    assert control_of(("kl",), BLOCKS) == ("embedding",)  # KL's one view is the inference view
    assert control_of(("embedding", "kl", "simclr"), BLOCKS) == ("embedding", "simclr_views")
    assert control_of(("dino", "simclr"), BLOCKS) == ("dino_views", "simclr_views")
    assert parse_feature_sets("default", BLOCKS) == [
        ("embedding",), ("kl",), ("dino",), ("simclr",), ("embedding", "kl", "dino", "simclr")
    ]  # fmt: skip
    assert len(parse_feature_sets("all", BLOCKS)) == 15
    assert parse_feature_sets("emb+kl,simclr_views", BLOCKS) == [("embedding", "kl"), ("simclr_views",)]
    with pytest.raises(ValueError, match="not extracted"):
        parse_feature_sets("emb+dino", ["embedding", "kl"])


def test_separate_blocks_equal_one_transformer_with_every_block(backbone):
    """Each block's own transformer gives exactly the columns of one transformer with every block."""
    images, _ = tiny_data(n=10)
    wanted = plan_blocks(LOSSES)
    events = []

    class Recorder:
        def open(self, stage, description, total, unit=None):
            events.append(("open", stage, description, total))

        def expect(self, stage, description, total):
            events.append(("expect", stage, description, total))

        def close(self, stage):
            events.append(("close", stage))

        def __call__(self, stage, n_samples):
            events.append((stage, n_samples))

    blocks = extract_blocks(backbone, wanted, images[:4], images, batch_size=4, progress=Recorder())
    combined = FungiTransformer(backbone, losses=[loss for loss in wanted.values() if loss is not None],
                                batch_size=4, random_state=0).fit(images[:4])  # fmt: skip
    features = combined.transform(images)
    columns = feature_blocks(combined.get_feature_names_out())
    assert list(columns) == list(blocks) == BLOCKS
    for name, block in blocks.items():
        np.testing.assert_allclose(block.features, features[:, columns[name]], rtol=1e-5, atol=1e-6)
        assert block.seconds_per_sample > 0 and not block.stored
    # the per-sample bar moves inside every block, and SimCLR's bank has a bar of its own
    opened = [event[2] for event in events if event[0] == "open"]
    assert opened == ["embedding", "KL grads", "DINO grads", "SimCLR grads", "DINO views", "SimCLR views"]
    assert sum(event[1] for event in events if event[0] == "transform") == len(BLOCKS) * len(images)
    assert ("expect", "fit", "SimCLR grads: fit (negative bank)", 4) in events


# -- scoring and verdicts ------------------------------------------------------------------


def test_scores_are_the_knn_protocol_on_random_stratified_splits():
    rng = np.random.default_rng(1)
    labels = np.arange(60) % 3
    blocks = {name: Block(name, rng.normal(size=(60, 5)) + labels[:, None], 0.0, 1.0) for name in ("embedding", "kl")}
    splits = draw_splits(labels, 2, train_size=40, test_size=20, seed=0)
    scores = score_feature_sets(blocks, labels, [("embedding", "kl")], splits)
    expected_splits = StratifiedShuffleSplit(2, train_size=40, test_size=20, random_state=0).split(np.zeros(60), labels)
    features = np.hstack([blocks["embedding"].features, blocks["kl"].features])
    expected = [evaluate_knn(features[tr], labels[tr], features[te], labels[te])["top1"] for tr, te in expected_splits]
    assert scores[("embedding", "kl")]["knn"]["top1"] == expected
    # split i does not depend on the number of splits: 5 splits begin with these 2
    longer = draw_splits(labels, 5, train_size=40, test_size=20, seed=0)
    assert [split.test_digest for split in longer[:2]] == [split.test_digest for split in splits]


def scores_of(values: dict) -> dict:
    return {features: {"knn": {"top1": list(top1)}} for features, top1 in values.items()}


FUNGI = ("embedding", "kl", "dino", "simclr")
CONTROL = ("embedding", "dino_views", "simclr_views")
NO_GRADIENT = [("embedding",), ("dino_views",), ("simclr_views",), ("embedding", "dino_views"),
               ("embedding", "simclr_views"), ("dino_views", "simclr_views"), CONTROL]  # fmt: skip


def flattering_scores(fungi_probe=(0.936, 0.946, 0.956), views_probe=(0.945, 0.950, 0.955)):
    """The issue's case: emb + all gradients 88.6, its matched control 85.2, the SimCLR views alone 86.9."""
    fungi = np.array([0.876, 0.886, 0.896])
    knn = {
        FUNGI: fungi,
        CONTROL: fungi - 0.034,
        ("simclr_views",): fungi - np.array([0.014, 0.017, 0.020]),
        **{features: np.full(3, 0.80) for features in NO_GRADIENT if features not in (CONTROL, ("simclr_views",))},
    }
    probe = {features: np.full(3, 0.90) for features in knn}
    probe[FUNGI], probe[("simclr_views",)], probe[CONTROL] = fungi_probe, views_probe, views_probe
    scores = {features: {"knn": {"top1": list(knn[features])}, "linear_probe": {"top1": list(probe[features])}}
              for features in knn}  # fmt: skip
    costs = {FUNGI: 0.070, CONTROL: 0.020, ("simclr_views",): 0.013, ("embedding",): 0.0005}
    costs |= {features: 0.015 for features in NO_GRADIENT if features not in costs}
    return scores, costs


def test_the_verdict_is_stated_against_the_stronger_comparison():
    scores, costs = flattering_scores()
    (fungi, *_) = build_results(scores, costs, [FUNGI], NO_GRADIENT, BLOCKS, ["knn"])
    against_control = fungi.comparisons["knn"]["control"]
    against_alternative = fungi.comparisons["knn"]["alternative"]
    assert against_control.reference == CONTROL and against_control.gain == pytest.approx(0.034)
    assert against_alternative.reference == ("simclr_views",)  # the best no-gradient set that costs no more
    assert against_alternative.gain == pytest.approx(0.017) and against_alternative.gain_std == pytest.approx(0.003)
    assert fungi.stronger("knn") is against_alternative and fungi.verdict("knn") == GAIN
    text, recommended = recommend([fungi], ["knn"])
    assert recommended == FUNGI and text.startswith("Use emb + KL + DINO + SimCLR") and "SimCLR views" in text


def test_a_cheaper_alternative_only_counts_when_it_costs_no_more():
    scores, costs = flattering_scores()
    costs[("simclr_views",)] = 0.5  # dearer than the gradients: not an alternative
    (fungi, *_) = build_results(scores, costs, [FUNGI], NO_GRADIENT, BLOCKS, ["knn"])
    assert fungi.comparisons["knn"]["alternative"].reference == CONTROL


def test_where_the_knn_and_the_linear_probe_disagree_the_embedding_is_kept():
    scores, costs = flattering_scores()  # probe: 94.6 against 95.0 for the views
    results = build_results(scores, costs, [FUNGI], NO_GRADIENT, BLOCKS, ["knn", "linear_probe"])
    fungi = results[0]
    assert fungi.verdict("knn") == GAIN and fungi.verdict("linear_probe") == WITHIN
    assert fungi.disagreement(["knn", "linear_probe"]) == "kNN top-1: GAIN; linear probe top-1: within spread"
    text, recommended = recommend(results, ["knn", "linear_probe"])
    assert recommended is None and text.startswith("Keep the embedding")
    assert "The protocols disagree on emb + KL + DINO + SimCLR" in text


# -- the report ----------------------------------------------------------------------------


def test_report_table_fits_88_columns_and_names_both_comparisons(report):
    table = report.summary()
    assert max(len(line) for line in table.splitlines()) <= TABLE_WIDTH
    assert "control: emb + DINO views + SimCLR views" in table and "kNN top-1" in table
    assert "linear probe top-1" in table and "ms (x emb)" in table
    assert report.recommendation.startswith(("Use ", "Keep the embedding"))
    rows = [result for result in report.results if result.requested]
    assert [result.label for result in rows] == ["embedding", "KL grads", "DINO grads", "SimCLR grads",
                                                 "emb + KL + DINO + SimCLR"]  # fmt: skip


def test_report_json_holds_the_schema_and_every_splits_score(report, tmp_path):
    document = json.loads(report.to_json(tmp_path / "report.json"))
    validate_report(document)
    assert set(document) == set(SCHEMA)
    assert [split["seed"] for split in document["splits"]] == [0, 0, 0]
    assert [split["index"] for split in document["splits"]] == [0, 1, 2]
    fungi = next(row for row in document["rows"] if row["features"] == list(FUNGI))
    for key in ("features", "mean", "std", "control", "gain", "gain_std", "wins", "ms_per_sample"):
        assert fungi[key] is not None, key
    assert fungi["control"] == list(CONTROL) and len(fungi["scores"]["knn"]["top1"]) == 3
    assert fungi["mean"] == pytest.approx(np.mean(fungi["scores"]["knn"]["top1"]))
    assert isinstance(document["recommendation"], str)
    broken = json.loads(json.dumps(document))
    broken["rows"][0]["scores"]["knn"]["top1"].pop()
    with pytest.raises(ValueError, match="2 values for 3 splits"):
        validate_report(broken)
    del broken["rows"][0]["gain"]
    with pytest.raises(ValueError, match=r"report.rows\[0\]: missing gain"):
        validate_report(broken)


def test_report_plot_is_a_png(report, tmp_path):
    pytest.importorskip("matplotlib")
    report.plot(tmp_path / "report.png")
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_blocks_kept_in_the_output_are_not_extracted_again(backbone, tmp_path, extracted_rows):
    images, labels = tiny_data()
    first = evaluate(backbone, images, labels, losses=LOSSES, fit_samples=6, splits=2, output_dir=tmp_path)
    pool = len(images) - 6
    assert extracted_rows["rows"] == 6 * pool and not any(block.stored for block in first.blocks.values())
    again = evaluate(backbone, images, labels, losses=LOSSES, fit_samples=6, splits=2, output_dir=tmp_path)
    assert extracted_rows["rows"] == 6 * pool and all(block.stored for block in again.blocks.values())
    for name, block in first.blocks.items():
        np.testing.assert_array_equal(block.features, again.blocks[name].features)
    # another projection: the embedding and the view blocks, which it does not touch, are read again
    other = evaluate(backbone, images, labels, losses=LOSSES, fit_samples=6, splits=2, output_dir=tmp_path,
                     projection="rademacher")  # fmt: skip
    assert {name for name, block in other.blocks.items() if block.stored} == {"embedding", "dino_views", "simclr_views"}
    assert extracted_rows["rows"] == 9 * pool


def test_compare_runs_pairs_two_runs_split_by_split(report, backbone, tmp_path):
    images, labels = tiny_data()
    dense = evaluate(backbone, images, labels, losses=LOSSES, fit_samples=6, splits=3, projection="rademacher")
    paths = [tmp_path / "a.json", tmp_path / "b.json"]
    report.to_json(paths[0])
    dense.to_json(paths[1])
    comparison = compare_runs(*paths)
    assert comparison.n_paired == 3 and comparison.differences["projection"] == ("srht", "rademacher")
    rows = dict(comparison.rows)
    assert rows[("embedding",)].gain == 0 and rows[("embedding",)].wins == 0  # no projection: the same features
    first, second = (json.loads(path.read_text()) for path in paths)
    kl_a = next(row for row in first["rows"] if row["features"] == ["kl"])["scores"]["knn"]["top1"]
    kl_b = next(row for row in second["rows"] if row["features"] == ["kl"])["scores"]["knn"]["top1"]
    assert rows[("kl",)].gain == pytest.approx(np.mean(np.subtract(kl_b, kl_a)))
    assert max(len(line) for line in comparison.table().splitlines()) <= TABLE_WIDTH
    other = evaluate(backbone, images[::-1], labels[::-1], losses=LOSSES[:1], fit_samples=6, splits=3)
    with pytest.raises(ValueError, match="data digests differ"):
        compare_runs(report, other)


def test_estimate_and_labels_are_checked(backbone):
    images, labels = tiny_data()
    messages = []
    found = evaluate(backbone, images, labels, losses=LOSSES[:1], fit_samples=6, splits=2, estimate=True,
                     log=messages.append)  # fmt: skip
    assert found.estimate["seconds"] > 0 and found.estimate["alternative"] is None  # loss objects: no preset
    assert messages and messages[0].startswith("Expected extraction time on this machine: about")
    with pytest.raises(ValueError, match="one label per sample"):
        evaluate(backbone, images, labels[:-1], losses=LOSSES[:1])
    with pytest.raises(ValueError, match="at least 2"):
        evaluate(backbone, images, np.r_[labels[:-1], 7], losses=LOSSES[:1], fit_samples=6)


def test_the_documentation_describes_every_field_of_the_json():
    from pathlib import Path

    from skfungi.evaluation.schema import ListOf, MapOf, Optional

    def fields(shape) -> set[str]:
        if isinstance(shape, (ListOf, MapOf, Optional)):
            return fields(shape.item if isinstance(shape, ListOf) else shape.value)
        if isinstance(shape, dict):
            return set(shape) | {name for value in shape.values() for name in fields(value)}
        return set()

    page = (Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text(encoding="utf-8")
    assert sorted(name for name in fields(SCHEMA) if f"`{name}`" not in page) == []


def test_the_removed_skfungi_evidence_says_where_it_went():
    with pytest.raises(ImportError, match=r"skfungi\.evaluation\.evaluate .*benchmarks/evidence"):
        from skfungi.evidence import run_pair  # noqa: F401


def test_a_module_takes_the_input_size_through_its_adapter():
    """evaluate(module, ..., input_size=...) resolves the module into its adapter first (a timm ViT, a
    plain CNN), as it does a spec string; it refused a module before."""
    from conftest import tiny_cnn, tiny_vit

    images, labels = tiny_data(n=40)
    for module, size in ((tiny_vit(), 16), (tiny_cnn(), 10)):
        report = evaluate(module, images, labels, losses=["kl"], layer="auto" if size == 16 else "pointwise",
                          fit_samples=4, splits=2, input_size=size)  # fmt: skip
        assert report.blocks["embedding"].features.shape[0] == 36


# -- the audit's inputs: labels of any type, bad settings named before any extraction ----------------


def test_class_labels_of_any_type_give_the_same_scores_and_missing_or_mixed_labels_are_refused(backbone):
    """Float class ids (0.0, 0.5) were refused by scikit-learn as 'continuous' after the whole extraction;
    a missing label (None, NaN) failed inside NumPy or scikit-learn, or was silently scored as a class."""
    images, labels = tiny_data(n=40)
    settings = {"losses": (), "fit_samples": 4, "splits": 2, "protocols": ("knn", "few_shot_knn:3")}
    by_int = evaluate(backbone, images, labels, **settings)
    for other in (labels * 0.5, np.array(["a", "b", "c"])[labels], labels.astype(object), labels == 1):
        scores = evaluate(backbone, images, other, **settings).results[0].scores
        if other.dtype != bool:
            assert scores == by_int.results[0].scores
    missing = labels.astype(object)
    missing[[5, 9]] = None, np.nan
    with pytest.raises(ValueError, match=r"y has no label for sample\(s\) 5, 9"):
        evaluate(backbone, images, missing, **settings)
    mixed = labels.astype(object)
    mixed[7] = "2"
    with pytest.raises(ValueError, match=r"y mixes labels of different kinds \(numbers, strings: sample 7 is '2'\)"):
        evaluate(backbone, images, mixed, **settings)


def test_bad_samples_and_settings_are_named_before_anything_is_extracted(backbone, extracted_rows):
    images, labels = tiny_data(n=40)
    settings = {"losses": (), "fit_samples": 4, "splits": 2}
    with pytest.raises(TypeError, match=r"X must be a sequence of samples .* got generator"):
        evaluate(backbone, (image for image in images), labels, **settings)
    with pytest.raises(ValueError, match="X is empty"):
        evaluate(backbone, images[:0], labels[:0], **settings)
    for fit_samples in (True, 1.5, [], "photos/"):
        with pytest.raises(ValueError, match="fit_samples must be a number of samples to hold out of X"):
            evaluate(backbone, images, labels, **{**settings, "fit_samples": fit_samples})
    with pytest.raises(ValueError, match="the number of splits must be a positive int, got True"):
        evaluate(backbone, images, labels, **{**settings, "splits": True})
    with pytest.raises(ValueError, match="pca='svd' is not a PCA solver"):
        evaluate(backbone, images, labels, **settings, pca="svd")
    assert extracted_rows["rows"] == 0


def test_a_bad_sample_is_named_by_its_position_in_x_not_in_the_part_it_was_held_out_in(backbone):
    """The fit samples and the pool are parts of X: an error named a position in the part (sample 26 for
    X's sample 30)."""
    images, labels = tiny_data(n=40)
    as_floats = images / 255.0
    for position in (30, 2, 15):  # 2 and 15 are held out to fit on
        bad = as_floats.copy()
        bad[position, 0, 0, 0] = np.nan
        with pytest.raises(ValueError, match=rf"^sample {position} contains NaN or infinite values"):
            evaluate(backbone, list(bad), labels, losses=LOSSES[2:], fit_samples=4, splits=2)  # SimCLR: a bank


def test_a_numpy_seed_gives_a_report_that_writes_its_json(backbone, tmp_path):
    images, labels = tiny_data(n=40)
    report = evaluate(backbone, images, labels, losses=(), fit_samples=4, splits=2, random_state=np.int64(3))
    report.to_json(tmp_path / "report.json")
    assert validate_report(json.loads((tmp_path / "report.json").read_text())) is None
    assert report.splits[0].seed == 3


def test_a_vit_takes_another_input_size_by_its_patches_and_an_impossible_one_is_refused():
    """input_size=24 on a 16-px ViT of 8-px patches failed inside timm ('Input height (24) doesn't match model
    (16)'); input_size=3, 0 or True failed inside timm or PIL."""
    from conftest import tiny_vit

    images, labels = tiny_data(n=40)
    report = evaluate(tiny_vit(), images, labels, losses=["kl"], fit_samples=4, splits=2, input_size=24)
    assert np.isfinite(report.blocks["kl"].features).all()
    with pytest.raises(ValueError, match=r"input_size=3 .* cannot forward: it takes 8-px views; pass input_size=8"):
        evaluate(tiny_vit(), images, labels, losses=["kl"], fit_samples=4, splits=2, input_size=3)
    for size in (0, True, 2.5):
        with pytest.raises(ValueError, match=rf"input_size must be a positive int, got {size}"):
            evaluate(tiny_vit(), images, labels, losses=["kl"], fit_samples=4, splits=2, input_size=size)


def test_a_run_that_is_not_a_readable_report_is_refused_naming_its_file(report, tmp_path):
    """compare_runs gave JSON's, UTF-8's or the schema's message without the file ('report: missing
    skfungi_version, ...', 'Expecting value: line 1 column 1')."""
    good = tmp_path / "good.json"
    report.to_json(good)
    other_schema = {**json.loads(good.read_text()), "schema": "skfungi.evaluation/9"}
    contents = {
        "schema.json": json.dumps(other_schema),
        "another-tool.json": json.dumps({"schema": "other/1", "rows": []}),
        "list.json": "[1, 2]",
        "empty.json": "",
        "broken.json": "{oops",
        "latin1.json": b"\xff\xfe{}",
    }
    for name, content in contents.items():
        path = tmp_path / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        with pytest.raises(ValueError, match=rf"run '.*{name}' is not a report of skfungi evaluate"):
            compare_runs(path, good)
    with pytest.raises(ValueError, match=r"unknown version 'skfungi.evaluation/9' \(this skfungi reads"):
        compare_runs(good, tmp_path / "schema.json")
    for missing in (tmp_path / "nope.json", tmp_path):
        with pytest.raises(ValueError, match=rf"cannot read run '{missing}'"):
            compare_runs(missing, good)


def test_the_thread_count_reaches_every_transformer():
    """evaluate's transformers ran at the library's 'auto' count whatever was asked (the command
    line's --threads 2 ran small forwards at one thread)."""
    import torch
    from conftest import tiny_cnn

    class CountingThreads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.seen = tiny_cnn(), set()

        def forward(self, x):
            self.seen.add(torch.get_num_threads())
            return self.net(x)

    images, labels = tiny_data(n=40)
    for asked, expected in ((3, {3}), ("auto", {1})):
        module = CountingThreads()
        backbone = ImageBackbone(module, layer="net.pointwise", input_size=12)
        evaluate(backbone, images, labels, losses=LOSSES[:2], fit_samples=4, splits=2, num_threads=asked)
        assert module.seen == expected


def test_the_report_records_each_loss_with_its_settings_and_pairing_names_the_one_that_differs(report, tmp_path):
    """Two runs with DINOLoss(latent_dim=8) and DINOLoss(latent_dim=256) recorded the same settings
    (the losses' names only), so compare_runs said 'settings that differ: none'."""
    document = json.loads(report.to_json())
    assert document["settings"]["loss_settings"]["dino"] == "DINOLoss(latent_dim=8, n_local_crops=2)"
    assert document["settings"]["loss_settings"]["dino_views"].startswith("ViewAverage(")
    other = json.loads(report.to_json())
    other["settings"]["loss_settings"]["dino"] = "DINOLoss(latent_dim=256, n_local_crops=2)"
    comparison = compare_runs(document, other)
    assert comparison.differences == {
        "loss_settings.dino": ("DINOLoss(latent_dim=8, n_local_crops=2)", "DINOLoss(latent_dim=256, n_local_crops=2)")
    }
    assert "loss_settings.dino: DINOLoss(latent_dim=8" in comparison.table()


def test_the_studys_advice_is_added_where_its_finding_shows_in_the_results(backbone):
    """docs/where_gradients_help.md: on CNNs DINO's gradient block never beat its views' control, and on a
    sentence encoder no setting made a gradient block beat its control; an evaluation that shows the same
    says what that means, and says nothing otherwise."""
    from skfungi.backbones import TabularBackbone
    from skfungi.evaluation.advice import backbone_family, study_advice
    from skfungi.evaluation.verdict import FeatureSetResult, compare_paired

    assert backbone_family(backbone, "image", "auto") == "cnn"
    assert backbone_family(TabularBackbone(torch.nn.Sequential(torch.nn.Linear(4, 3))), "tabular", "auto") is None
    assert backbone_family(None, "text", "auto") == "text"
    recurrent = TabularBackbone(torch.nn.Sequential(torch.nn.LSTM(4, 3), torch.nn.Linear(3, 2)), layer="1")
    assert backbone_family(recurrent, "audio", "auto") == "recurrent"

    def dino(ours):
        views = compare_paired(ours, [0.80, 0.82, 0.81], ("dino_views",))
        comparisons = {"knn": {"control": views, "alternative": views}}
        return FeatureSetResult(("dino",), True, {}, 1.0, 12.0, ("dino_views",), comparisons)

    losing, level = dino([0.70, 0.71, 0.69]), dino([0.81, 0.81, 0.82])
    assert "leaving DINO out" in study_advice("cnn", [losing], "knn", None)
    assert study_advice("cnn", [level], "knn", None) == ""
    assert study_advice(None, [losing], "knn", None) == ""
    assert "keep the embedding" in study_advice("text", [level], "knn", None)
    assert "Resemblyzer" in study_advice("recurrent", [level], "knn", None)
    assert study_advice("text", [level], "knn", ("embedding", "kl")) == ""
