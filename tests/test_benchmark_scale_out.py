"""The scale-out benchmark scripts run end to end at tiny sizes (a check that they work, not a measurement)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run_script(monkeypatch, name: str, *arguments: str):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *arguments])
    importlib.import_module(name).main()


def test_index_build_reports_time_memory_and_recall(monkeypatch, tmp_path, capsys):
    report = tmp_path / "index.json"
    arguments = ("--n", "3000", "--dim", "8", "--queries", "20", "--ef", "10,200", "--n-jobs", "1")
    run_script(monkeypatch, "index_build", *arguments, "--json", str(report))
    found = json.loads(report.read_text())
    assert found["n"] == 3000 and found["build_s"] > 0 and found["build_peak_rss_mb"] > 50
    recalls = [search["recall@10"] for search in found["searches"]]
    assert 0 < recalls[0] <= recalls[1] and recalls[1] > 0.95  # ef=200 on 3,000 rows is nearly exact
    assert "| ef | recall@10 |" in capsys.readouterr().out


def test_sizing_is_a_model_of_the_measured_costs(monkeypatch, tmp_path, capsys):
    index = tmp_path / "index.json"
    built = {"n": 1_000_000, "dim": 128, "n_jobs": 2, "build_s": 500.0, "M": 16, "ef_construction": 100}
    index.write_text(json.dumps(built))
    run_script(monkeypatch, "sizing", "--index", str(index))
    out = capsys.readouterr().out
    assert out.startswith("MODEL, not a measurement")
    # MobileNetV2, paper views: 0.245 s x 262 per image, 10M images = 178,306 core-hours
    assert "| MobileNetV2 (ImageNet) | paper | 64.19 | 10M | 178,306 |" in out
    assert "| MobileNetV2 (ImageNet) | 5120 | 10M | 205.0 GB |" in out  # 4 bytes x 5,120 features + 16 per id
