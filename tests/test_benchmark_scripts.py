"""The projection, bank-cache and GPU benchmark scripts run end to end on the CPU at tiny sizes
(a check that they work, not a measurement)."""

from __future__ import annotations

import ast
import importlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY_VIT = "depth=1,embed_dim=32,num_heads=2"


@pytest.fixture
def scripts(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module


def test_projection_benchmark_times_every_projection(scripts, capsys):
    projection = scripts("projection")
    results = projection.main(["--layers", "Resemblyzer linear", "--samples", "2", "--views", "1,2", "--repeats", "1"])
    assert [row["tokens_per_sample"] for row in results["rows"]] == [1, 2]
    for row in results["rows"]:
        assert set(row["ms_per_sample"]) == {"rademacher", "kronecker", "srht"}
        assert all(ms > 0 for ms in row["ms_per_sample"].values()) and row["dense_over"]["rademacher"] == 1
    assert "| Resemblyzer linear (256x257) | 1 |" in capsys.readouterr().out


def test_projection_benchmark_measures_extra_memory(scripts):
    if not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("the peak RSS mark cannot be reset on this system")
    # in a fresh process, as the benchmark measures it: in this one, memory freed by earlier
    # tests can be reused without raising the resident peak
    extra = scripts("projection").memory("Resemblyzer linear", "rademacher", 4, 1, 1)
    assert extra > 0.25  # at least the (4, 65,792) float32 gradients it forms


def test_bank_cache_benchmark_compares_a_first_and_a_cached_fit(scripts):
    bank_cache = scripts("bank_cache")
    argv = ["--backbone", "vit_small_patch16_224", "--model-args", TINY_VIT, "--negatives", "2", "--repeats", "1"]
    results = bank_cache.main(argv)
    assert results["first_fit_seconds_per_bank_image"] > 0 and results["cached_fit_seconds_per_bank_image"] > 0


def test_gpu_script_dry_run_on_the_cpu(scripts, tmp_path):
    """Every part the GPU run has (both presets, both precisions, all loss sets, the reference
    comparison for every configuration), written to one JSON and one Markdown file."""
    pytest.importorskip("fungivision")
    gpu = scripts("gpu")
    json_path, markdown_path = tmp_path / "gpu.json", tmp_path / "gpu.md"
    gpu.main(["--dry-run", "--json", str(json_path), "--markdown", str(markdown_path)])
    results = json.loads(json_path.read_text())
    assert [(run["model"], run["precision"]) for run in results["presets"]] == [
        ("vit_small_patch16_224", "float32"),
        ("vit_small_patch16_224", "bfloat16"),
    ]
    rows = {(row["preset"], row["losses"]) for row in results["presets"][0]["rows"]}
    assert rows == {(preset, losses) for preset in ("paper", "fast") for losses in scripts("presets").LOSS_SETS}
    for run in results["reference"]:
        configs = [(row["config"], row["projection"]) for row in run["rows"]]
        assert configs == [(c, p) for c in ("kl", "dino", "simclr", "kl+dino+simclr") for p in ("rademacher", "srht")]
        assert all(row["speedup"] > 0 for row in run["rows"])
    text = markdown_path.read_text()
    assert "dry run: not a measurement" in text and text.count("<= 66x") == 2 and text.count("<= 12x") == 2


def test_projection_accuracy_pairs_two_projections_on_the_same_splits(scripts, monkeypatch, tmp_path):
    """Two evaluations of one pair, one per projection, paired split by split: the embedding does not
    depend on the projection (read from the store by the second run, scored the same), the gradient
    blocks are extracted for each projection."""
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent))
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent / "tests"))
    projection_accuracy = scripts("projection_accuracy")
    data = scripts("benchmarks.evidence.data")
    from conftest import tiny_cnn

    from skfungi import ImageBackbone
    from skfungi.losses import KLLoss

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    images = rng.integers(0, 120, size=(60, 14, 14, 3)).astype(np.uint8)
    images[..., 0] += (100 * labels).astype(np.uint8)[:, None, None]

    def tiny_pair(**options):
        backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)
        return data.Pair("tiny", "", backbone, "pointwise", {"kl": KLLoss(latent_dim=8)}, images, labels,
                         images[:4], n_train=40, n_test=20, batch_size=16)  # fmt: skip

    monkeypatch.setitem(data.PAIR_BUILDERS, "tiny", tiny_pair)
    comparison, (_, srht) = projection_accuracy.compare_pair("tiny", ("rademacher", "srht"), tmp_path, 3, False)
    rows = dict(comparison.rows)
    assert list(rows) == [("embedding",), ("embedding", "kl")] and comparison.n_paired == 3
    assert rows[("embedding",)].gain == 0 and comparison.differences["projection"] == ("rademacher", "srht")
    assert srht.blocks["embedding"].stored and not srht.blocks["kl"].stored
    assert "B - A" in comparison.table()


def test_preset_accuracy_projects_one_gradient_with_each_projection_side_by_side(scripts):
    """Each part of ``SideBySide`` is what that projection alone gives for the same factors, and
    ``projection_blocks`` hands each part back, normalised, beside the shared embedding."""
    import torch

    from skfungi.projection import make_projection

    preset_accuracy = scripts("preset_accuracy")
    names = ("rademacher", "kronecker", "srht")
    both = preset_accuracy.SideBySide(names).fit((5, 6), 12, seed=4)
    g, a = torch.randn(3, 7, 5, dtype=torch.float64), torch.randn(3, 7, 6, dtype=torch.float64)
    projected = both.project(both.reduce(g, a))
    assert projected.shape == (3, 36)
    for index, name in enumerate(names):
        alone = make_projection(name).fit((5, 6), 12, seed=4)
        torch.testing.assert_close(projected[:, 12 * index : 12 * (index + 1)], alone.project(alone.reduce(g, a)))

    features = np.hstack([np.ones((3, 2)), projected.numpy()])
    feature_names = ["embedding0", "embedding1"] + [f"kl{i}" for i in range(36)]
    blocks = preset_accuracy.projection_blocks(features, feature_names, list(names), "srht")
    np.testing.assert_array_equal(blocks["embedding"], np.ones((3, 2)))
    expected = projected[:, 24:].numpy()
    np.testing.assert_allclose(blocks["kl"], expected / np.linalg.norm(expected, axis=1, keepdims=True))


def test_throughput_baseline_embeds_the_views_fungi_embeds(scripts):
    """The throughput benchmark's baseline forward sees the backbone's prepared inference views, so
    FUNGI's embedding block equals its normalised output (the script's sanity check)."""
    import timm
    import torch

    from skfungi import FungiTransformer, TimmBackbone

    throughput = scripts("throughput")
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1, embed_dim=32, num_heads=2).eval()
    images = np.random.default_rng(0).integers(0, 256, (2, 240, 200, 3), dtype=np.uint8)
    inputs = throughput.preprocess(images, TimmBackbone(model))
    fungi = FungiTransformer(model, losses=("kl",), random_state=0).fit(images)
    expected = torch.nn.functional.normalize(throughput.baseline_embed(model, inputs, 2), dim=1).numpy()
    np.testing.assert_allclose(fungi.transform(images)[:, : fungi.embedding_dim_], expected, atol=1e-5)


# -- benchmarks are users of the library: public names only, nothing patched --


def private_uses(source: str) -> list[str]:
    """What ``source`` does that a user of the public API must not: import a private skfungi module or
    name, read a private attribute of a skfungi object, or change a skfungi module, class or function
    (assign or delete an attribute, ``setattr``/``delattr``, ``patch``/``setattr`` by a "skfungi..." path)."""
    tree = ast.parse(source)
    found, bound = [], set()  # bound: the local names of imported skfungi modules and objects
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] == "skfungi":
                    bound.add((alias.asname or alias.name).partition(".")[0])
                    if _private_path(alias.name):
                        found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").partition(".")[0] == "skfungi":
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if _private_path(node.module) or alias.name.startswith("_"):
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in targets:
                if isinstance(target, ast.Attribute) and _root(target) in bound:
                    found.append(f"line {node.lineno}: changes {ast.unparse(target)}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            first = node.args[0] if node.args else None
            if name in ("setattr", "delattr") and first is not None and _root(first) in bound:
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
            elif name in ("patch", "setattr", "setitem", "delattr") and any(
                isinstance(arg, ast.Constant) and str(arg.value).startswith("skfungi") for arg in node.args
            ):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and _root(node) in bound:
            if node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"line {node.lineno}: reads {ast.unparse(node)}")
    return found


def _private_path(module: str) -> bool:
    return any(part.startswith("_") for part in module.split("."))


def _root(node) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def test_the_check_finds_private_imports_and_patches():
    source = """
import skfungi._engine.extractor
from skfungi._utils.device import autocast
from skfungi.losses import _base
from skfungi import FungiTransformer
from skfungi._engine import extractor as engine
engine.PROJECTION_BUFFER_BYTES = 1
skfungi._engine.extractor.FeatureExtractor.transform = len
setattr(FungiTransformer, "fit", len)
monkeypatch.setattr("skfungi._engine.extractor.LABELS", {})
FungiTransformer._private
fungi = FungiTransformer(None)
fungi.batch_size = 2
"""
    lines = {int(use.split(":")[0].removeprefix("line ")) for use in private_uses(source)}
    assert sorted(lines) == [2, 3, 4, 6, 7, 8, 9, 10, 11]  # not the public import (5) nor the instance's parameter (13)


def test_benchmarks_import_only_public_names_and_patch_nothing():
    scripts = sorted(BENCHMARKS.rglob("*.py"))
    assert len(scripts) > 15
    found = {
        str(path.relative_to(BENCHMARKS)): uses
        for path in scripts
        if (uses := private_uses(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_gradient_study_runs_each_setting_and_reports_it_against_its_control_and_the_default(
    scripts, monkeypatch, tmp_path
):
    """benchmarks/gradient_study.py on a tiny pair: one report per setting (the blocks a setting does not
    change read from the pair's store), the whitened scores of the default run, and the report's table and
    picture: each block against its control, emb + all against its control, the best alternative and the
    default run, the same splits throughout."""
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent))
    monkeypatch.syspath_prepend(str(BENCHMARKS.parent / "tests"))
    study = scripts("benchmarks.gradient_study")
    report = scripts("benchmarks.gradient_study_report")
    data = scripts("benchmarks.evidence.data")
    from conftest import tiny_cnn

    from skfungi import ImageBackbone
    from skfungi.losses import KLLoss, SimCLRLoss

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    images = rng.integers(0, 120, size=(60, 14, 14, 3)).astype(np.uint8)
    images[..., 0] += (60 * labels).astype(np.uint8)[:, None, None]
    small = {"kl": KLLoss(latent_dim=8), "simclr": SimCLRLoss(grid_size=2, latent_dim=8, n_negatives=4)}
    settings = [
        study.Setting("default", "all", small),
        study.Setting("KL temperature 1", "kl", {**small, "kl": KLLoss(latent_dim=8, temperature=1.0)}),
        study.Setting("projection 4", "all", small, projection_dim=4),
    ]

    def tiny_pair():
        backbone = ImageBackbone(tiny_cnn(), layer="pointwise", input_size=12)
        return data.Pair("tiny", "", backbone, "pointwise", {}, images[4:], labels[4:], images[:4],
                         n_train=36, n_test=20, batch_size=16)  # fmt: skip

    monkeypatch.setitem(study.PAIRS, "tiny", (tiny_pair, settings))
    assert study.main(["--output", str(tmp_path), "--pairs", "tiny", "--threads", "1"]) == 0
    folder = tmp_path / "tiny"
    assert {path.name for path in folder.glob("*.json")} == {
        "default.json", "kl-temperature-1.json", "projection-4.json", "whitened.json"
    }  # fmt: skip
    default, projected = (json.loads((folder / name).read_text()) for name in ("default.json", "projection-4.json"))
    assert default["splits"] == projected["splits"]
    stored = {block["name"]: block["stored"] for block in projected["blocks"]}
    assert stored == {"embedding": True, "kl": False, "simclr": False, "simclr_views": True}
    markdown = report.write_report(tmp_path, ["tiny"], tmp_path / "figures")
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert "vs default" in lines[0] and len(lines) == 1 + 3 + 1  # header, 3 settings, whitening
    default_row = next(line for line in lines if line.startswith("| default |"))
    assert default_row.split(" | ")[-2] == "-"  # the default against itself: no cell
    assert (tmp_path / "figures" / "where_gradients_help_tiny.png").stat().st_size > 1000
