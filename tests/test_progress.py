"""Progress bars and logging: silent at verbose=0, tqdm bars for fit and transform at verbose=1."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

import skfungi
from skfungi import DINOLoss, FungiTransformer, SimCLRLoss
from skfungi._utils.progress import progress_listener

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def fungi_factory(cnn_backbone):
    def make(verbose):
        # a 2 x 2 SimCLR grid keeps the negative bank small; batch_size=2 gives several batches
        return FungiTransformer(
            cnn_backbone, losses=("kl", SimCLRLoss(grid_size=2)), batch_size=2, random_state=0, verbose=verbose
        )

    return make


def test_verbose_zero_writes_nothing(fungi_factory, images, capsys, caplog):
    caplog.set_level(logging.DEBUG, logger="skfungi")
    fungi_factory(0).fit(images).transform(images)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_verbose_one_shows_fit_and_transform_bars(fungi_factory, images, capsys):
    fungi = fungi_factory(1).fit(images)
    fit_err = capsys.readouterr().err
    assert "encoding simclr views" in fit_err and "100%" in fit_err  # the negative bank
    assert "FUNGI features" not in fit_err
    fungi.transform(images)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "FUNGI features" in captured.err and "6/6" in captured.err  # counted in samples, not batches


def test_library_logs_through_module_loggers_not_prints(fungi_factory, images, capsys, caplog):
    caplog.set_level(logging.INFO, logger="skfungi")
    fungi_factory(0).fit(images)
    assert capsys.readouterr().out == ""
    fitting = [record for record in caplog.records if "fitting" in record.getMessage()]
    assert fitting and all(record.name.startswith("skfungi") for record in fitting)


def test_no_bare_print_in_library_modules():
    """Only the command line (skfungi/cli/, __main__.py) may print; library modules log."""
    package = Path(skfungi.__file__).parent
    printing = []
    for path in sorted(package.rglob("*.py")):
        if path.parent.name == "cli" or path.name in ("__main__.py", "evidence.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                printing.append(f"{path.relative_to(package)}:{node.lineno}")
    assert printing == []


def test_transform_progress_moves_about_once_per_sample_within_a_batch(vit_backbone, images):
    """At paper-like views a batch of eight images takes minutes on a CPU: the progress moves as each
    view group finishes (by its share of a sample's views), in whole samples, and adds up exactly."""
    fungi = FungiTransformer(
        vit_backbone,
        losses=("kl", DINOLoss(latent_dim=16), SimCLRLoss(grid_size=3, n_negatives=2), "simclr_views"),
        batch_size=8,
        random_state=0,
    ).fit(images)
    reports = []
    with progress_listener(lambda stage, n: reports.append((stage, n))):
        fungi.transform(images)
    counts = [n for stage, n in reports if stage == "transform"]
    assert sum(counts) == len(images)  # one batch of six
    assert len(counts) >= len(images) - 1 and max(counts) <= 2  # not one report of six at the batch's end


def test_a_progress_listener_replaces_the_library_bars(fungi_factory, images, capsys):
    """The command line shows its own bars (a listener) and passes --verbose on for the model libraries'
    messages: the library then draws no bar of its own."""
    reports = []
    with progress_listener(lambda stage, n: reports.append(stage)):
        fungi_factory(1).fit(images).transform(images)
    assert "fit" in reports and "transform" in reports
    err = capsys.readouterr().err
    assert "FUNGI features" not in err and "encoding simclr views" not in err
