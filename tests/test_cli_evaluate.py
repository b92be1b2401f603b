"""``skfungi evaluate`` on an image folder, a text CSV, an .npz and a .npy on tiny models; the audio folder reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from cli_support import BACKBONE, error_line, write_images

from skfungi import cli
from skfungi.cli.inputs import read_input
from skfungi.evaluation import validate_report

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAST = ["--splits", "2", "--fit-samples", "4", "-q"]


def evaluate(*arguments) -> int:
    return cli.main(["evaluate", *map(str, arguments)])


def printed(capsys) -> str:
    """The command's output, whose lines fit 88 columns (but the lines naming the test's long paths)."""
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines() if "/tmp" not in line) <= 88, out
    return out


def test_an_image_folder_gives_the_table_the_recommendation_the_json_and_the_picture(tmp_path, capsys):
    folder = tmp_path / "photos"
    write_images(folder, {"cat": 12, "dog": 12, "fox": 12})
    assert evaluate(folder, "--backbone", BACKBONE, *FAST) == 0
    out = printed(capsys)
    assert "Expected extraction time on this machine: about" in out and "With --views fast: about" in out
    assert "control: emb + DINO views + SimCLR views" in out and ("Keep the embedding" in out or "Use " in out)
    output = tmp_path / "photos.evaluation"
    document = json.loads((output / "report.json").read_text())
    validate_report(document)
    assert document["data"]["n_samples"] == 36 and document["data"]["n_pool"] == 32
    assert document["settings"]["projection"] == "srht" and document["settings"]["views"] == "paper"
    assert (output / "report.png").stat().st_size > 0 and len(list((output / "blocks").glob("*.npz"))) == 6
    # a rerun extracts nothing: every block is read from --output, and no estimate is needed
    assert evaluate(folder, "--backbone", BACKBONE, *FAST) == 0
    out = printed(capsys)
    assert "Expected extraction time" not in out and out.count("(stored)") == 6


def test_a_text_csv_with_a_label_column(tmp_path, bert_dir, capsys):
    import pandas as pd

    rng = np.random.default_rng(0)
    words = ["good", "bad", "film", "plot", "great", "awful"]
    texts = [" ".join(rng.choice(words, 5)) for _ in range(36)]
    pd.DataFrame({"review": texts, "sentiment": ["pos", "neg"] * 18}).to_csv(tmp_path / "reviews.csv", index=False)
    options = ["--text-column", "review", "--label-column", "sentiment", "--json", tmp_path / "r.json",
               "--plot", tmp_path / "r.png", "--output", tmp_path / "blocks", "--no-estimate"]  # fmt: skip
    assert evaluate(tmp_path / "reviews.csv", "--backbone", f"hf:{bert_dir}", *FAST, *options) == 0
    out = printed(capsys)
    assert "SimCLR grads" in out and "DINO" not in out  # texts: the paper's KL and SimCLR
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["data"]["modality"] == "text" and document["settings"]["losses"] == ["kl", "simclr", "simclr_views"]
    assert (tmp_path / "r.png").is_file()


def test_an_npz_with_labels_chosen_sets_and_the_linear_probe(tmp_path, capsys):
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b", "c"], 12)
    X = rng.integers(0, 120, size=(36, 14, 14, 3)).astype(np.uint8)
    X[..., 0] += (60 * (y == "b") + 120 * (y == "c")).astype(np.uint8)[:, None, None]
    np.savez(tmp_path / "images.npz", X=X, y=y)
    sets = [
        "--losses",
        "kl,simclr",
        "--sets",
        "emb+kl,emb+simclr",
        "--protocols",
        "knn,linear_probe",
        "--views",
        "fast",
    ]
    assert evaluate(tmp_path / "images.npz", "--backbone", BACKBONE, *FAST, *sets, "--no-estimate") == 0
    out = printed(capsys)
    assert "linear probe top-1 (%)" in out and "emb + SimCLR" in out
    document = json.loads((tmp_path / "images.npz.evaluation" / "report.json").read_text())
    requested = [row["features"] for row in document["rows"] if row["requested"]]
    assert requested == [["embedding", "kl"], ["embedding", "simclr"]]
    assert document["protocols"] == ["knn", "linear_probe"] and document["settings"]["views"] == "fast"


def test_a_npy_takes_its_labels_from_a_file_and_unlabelled_inputs_are_refused(tmp_path, capsys):
    X = np.random.default_rng(0).integers(0, 256, size=(36, 14, 14, 3)).astype(np.uint8)
    np.save(tmp_path / "images.npy", X)
    assert evaluate(tmp_path / "images.npy", "--backbone", BACKBONE, *FAST) == 1
    assert "has no labels" in error_line(capsys)
    (tmp_path / "labels.txt").write_text("\n".join(["x", "y"] * 18) + "\n")
    options = ["--labels", tmp_path / "labels.txt", "--losses", "kl", "--no-estimate"]
    assert evaluate(tmp_path / "images.npy", "--backbone", BACKBONE, *FAST, *options) == 0
    assert "KL grads" in printed(capsys)


def test_compare_pairs_two_runs(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", X=np.random.default_rng(1).integers(0, 256, (36, 14, 14, 3)).astype(np.uint8),
             y=np.arange(36) % 2)  # fmt: skip
    for projection in ("srht", "rademacher"):
        options = ["--losses", "kl", "--projection", projection, "--json", tmp_path / f"{projection}.json"]
        assert evaluate(tmp_path / "d.npz", "--backbone", BACKBONE, *FAST, *options, "--no-estimate") == 0
    capsys.readouterr()
    assert evaluate("--compare", tmp_path / "srht.json", tmp_path / "rademacher.json") == 0
    out = " ".join(printed(capsys).split())
    assert "run B against run A on 2 paired splits" in out and "projection: srht -> rademacher" in out
    assert evaluate("--compare", tmp_path / "srht.json", tmp_path / "missing.json") == 1


def write_clip(path, seconds: float, rate: int = 8000, channels: int = 1, seed: int = 0):
    import soundfile

    samples = np.random.default_rng(seed).uniform(-0.5, 0.5, (int(seconds * rate), channels)).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, samples if channels > 1 else samples[:, 0], rate)
    return samples


def test_an_audio_folder_is_read_by_both_commands(tmp_path):
    pytest.importorskip("soundfile")
    stereo = write_clip(tmp_path / "clips" / "en" / "a.wav", 0.25, channels=2)
    write_clip(tmp_path / "clips" / "en" / "b.flac", 0.5, seed=1)
    write_clip(tmp_path / "clips" / "fr" / "c.wav", 0.3, rate=16000, seed=2)
    (tmp_path / "clips" / "fr" / "notes.txt").write_text("not a clip")
    source = read_input(tmp_path / "clips")
    assert source.modality == "audio" and source.ignored_files == 1
    assert source.names.tolist() == ["en/a.wav", "en/b.flac", "fr/c.wav"] and source.labels.tolist() == [
        "en",
        "en",
        "fr",
    ]
    assert source.unreadable() == []
    samples, kept, failed = source.load([0, 2])
    assert kept == [0, 2] and failed == [] and [rate for _, rate in samples] == [8000, 16000]
    np.testing.assert_allclose(samples[0][0], stereo.mean(axis=1), atol=1e-4)  # channels averaged (16-bit PCM)
    (tmp_path / "clips" / "fr" / "broken.wav").write_bytes(b"RIFF0000WAVEnope")
    assert [index for index, _ in read_input(tmp_path / "clips").unreadable()] == [2]  # fr/broken.wav
    write_images(tmp_path / "clips", {"en": 1})
    with pytest.raises(cli.inputs.InputError, match="holds both images"):
        read_input(tmp_path / "clips")


@pytest.mark.slow
def test_extract_and_evaluate_an_audio_folder_with_resemblyzer(tmp_path, capsys):
    """Real spoken prompts (Asterisk's, in English and French) and the real Resemblyzer encoder."""
    pytest.importorskip("resemblyzer")
    soundfile = pytest.importorskip("soundfile")
    import shutil

    from skfungi.datasets import ASTERISK_SOUNDS_DIR

    for language in ("en", "fr"):
        found = sorted((ASTERISK_SOUNDS_DIR / language).rglob("*.wav")) if ASTERISK_SOUNDS_DIR.is_dir() else []
        short = [path for path in found if 0.6 <= soundfile.info(path).duration <= 2.0][:24]
        if len(short) < 24:
            pytest.skip(f"Asterisk prompts in {language!r} are not installed (asterisk-core-sounds-{language}-wav)")
        for path in short:
            (tmp_path / "clips" / language).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, tmp_path / "clips" / language / path.name)
    out_file = tmp_path / "f.npz"
    assert cli.main(["extract", str(tmp_path / "clips"), "-o", str(out_file), "--backbone", "resemblyzer:pretrained",
                     "--losses", "kl", "-q"]) == 0  # fmt: skip
    with np.load(out_file) as stored:
        assert stored["features"].shape == (48, 512) and stored["labels"].tolist() == ["en"] * 24 + ["fr"] * 24
    options = ["--losses", "kl,simclr", "--splits", "2", "--fit-samples", "4", "-q", "--no-estimate"]
    assert cli.main(["evaluate", str(tmp_path / "clips"), "--backbone", "resemblyzer:pretrained", *options]) == 0
    assert "SimCLR views" in printed(capsys)
