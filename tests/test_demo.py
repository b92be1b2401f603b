"""The demo is ``skfungi evaluate`` on a sample of Fashion-MNIST: its data, its command line, a quick run."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn

from skfungi import datasets
from skfungi.cli import demo
from skfungi.evaluation import validate_report
from skfungi.evaluation.demo_data import DEMO_SAMPLES, write_demo_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_mobilenet_like() -> nn.Module:
    """A module shaped like MobileNetV2 where it matters: ``features.18.0`` is a 1x1 conv."""
    torch.manual_seed(0)
    model = nn.Module()
    head = nn.Sequential(nn.Conv2d(8, 12, 1), nn.ReLU())
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), *[nn.Identity()] * 16, head)
    return model.eval()


def test_demo_data_is_fashion_mnist_or_the_digits(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    messages = []
    path = write_demo_data(tmp_path / "demo", warn=messages.append)
    assert path.name == "digits.npz" and any("dataset-fashion-mnist" in message for message in messages)
    with np.load(path) as stored:
        assert stored["X"].shape == (DEMO_SAMPLES, 8, 8) and stored["X"].dtype == np.uint8
        assert np.bincount(stored["y"]).min() >= DEMO_SAMPLES // 10 - 5  # stratified
    modified = path.stat().st_mtime_ns
    assert write_demo_data(tmp_path / "demo", warn=messages.append) == path and path.stat().st_mtime_ns == modified


def test_data_only_writes_the_data_and_prints_its_path(tmp_path, capsys):
    assert demo.main(["--data-only", "--output", str(tmp_path)]) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith(".npz") and np.load(path)["X"].shape[0] == DEMO_SAMPLES


def test_the_demo_stands_for_a_skfungi_evaluate_command():
    args = demo._parser().parse_args(["--quick", "--views", "fast"])
    line = demo.demo_command_line(args, "data.npz")
    assert line[:2] == ["evaluate", "data.npz"]
    text = " ".join(line)
    for option in ("--backbone skfungi:mobilenet_v2", "--image-size 32", "--fit-samples 256", "--train-size 700",
                   "--test-size 300", "--threads 1", "--views fast", "--output skfungi-demo"):  # fmt: skip
        assert option in text, option


def test_demo_quick_runs_skfungi_evaluate(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "load_mobilenet_v2", tiny_mobilenet_like)
    options = ["--train-size", "30", "--test-size", "15", "--fit-samples", "6", "--views", "fast"]
    assert demo.main(["--quick", "--image-size", "16", *options, "--output", str(tmp_path), "-q", "--no-estimate"]) == 0
    output = capsys.readouterr().out
    assert output.startswith("skfungi demo runs: skfungi evaluate ")
    assert "--splits 2 --test-size 15 --train-size 30 --fit-samples 6" in output.splitlines()[0]
    assert max(len(line) for line in output.splitlines()[1:] if str(tmp_path) not in line) <= 88
    assert "emb + KL + DINO + SimCLR" in output and "control: emb + DINO views + SimCLR views" in output
    document = json.loads((tmp_path / "report.json").read_text())
    validate_report(document)
    assert document["data"]["n_pool"] == 45 and len(document["splits"]) == 2
    assert (tmp_path / "report.png").is_file() and list((tmp_path / "blocks").glob("embedding-*.npz"))
