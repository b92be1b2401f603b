"""``skfungi index`` and ``skfungi search``: an index built batch by batch from a Parquet dataset, searched from the
command line, and loaded back into HNSWTransformer (a Pipeline included)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from cli_support import error_line
from sklearn.frozen import FrozenEstimator
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from skfungi import HNSWTransformer, cli
from skfungi.cli import options
from skfungi.cli.outputs import write_dataset, write_features

N, WIDTHS = 300, {"embedding": 12, "kl": 12, "simclr": 12}


def features_and_labels(n=N, seed=0):
    """Clustered rows, each block L2-normalised as skfungi extract writes them, with their class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    centres = rng.normal(size=(4, sum(WIDTHS.values())))
    X = (centres[labels] + 0.8 * rng.normal(size=(n, sum(WIDTHS.values())))).astype(np.float32)
    start = 0
    for width in WIDTHS.values():
        X[:, start : start + width] /= np.linalg.norm(X[:, start : start + width], axis=1, keepdims=True)
        start += width
    return X, labels


def feature_names():
    return [f"{block}{i}" for block, width in WIDTHS.items() for i in range(width)]


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """A Parquet dataset of 300 rows in 4 part files, as ``skfungi extract -o features/`` writes it."""
    from skfungi.cli import outputs

    X, labels = features_and_labels()
    monkeypatch.setattr(outputs, "PART_BYTES", 64 * 4 * X.shape[1])
    samples = np.asarray([f"img{i:03d}.png" for i in range(N)])
    chunks = lambda: iter(np.array_split(X, 10))  # noqa: E731
    write_dataset(tmp_path / "features", chunks, feature_names(), samples, labels.astype(str), "blocks")
    assert len(list((tmp_path / "features").iterdir())) == 4  # chunks of 30 rows joined into parts of 90, 90, 90, 30
    return tmp_path / "features", X, samples, labels


def run(*arguments) -> int:
    return cli.main([str(argument) for argument in arguments])


def test_the_defaults_are_hnswtransformers():
    assert options.INDEX_PARAMETERS == {name: HNSWTransformer().get_params()[name] for name in options.INDEX_PARAMETERS}


def test_index_and_search_round_trip(dataset, tmp_path, monkeypatch):
    folder, X, samples, _ = dataset
    added = []
    partial_fit = HNSWTransformer.partial_fit
    monkeypatch.setattr(
        HNSWTransformer, "partial_fit", lambda self, rows: added.append(len(rows)) or partial_fit(self, rows)
    )
    assert run("index", folder, "-o", tmp_path / "index", "--batch-size", 40, "--M", 8, "-q") == 0
    assert max(added) <= 40 and sum(added) == N  # bounded: never more than a batch at a time
    assert sorted(path.name for path in (tmp_path / "index").iterdir()) == [
        "columns.json",
        "hnsw.bin",
        "hnsw.json",
        "ids.parquet",
    ]
    queries = tmp_path / "queries.parquet"
    write_features(queries, lambda: iter([X[:25]]), feature_names(), samples[:25], None)
    assert run("search", tmp_path / "index", queries, "-k", 10, "-o", tmp_path / "nn.parquet", "-q") == 0

    found = pd.read_parquet(tmp_path / "nn.parquet")
    assert found["query"].tolist() == samples[:25].tolist()
    reference = HNSWTransformer(M=8, random_state=0).fit(X)  # the same graph, built at once
    distances, indices = reference.kneighbors(X[:25], n_neighbors=10)
    assert np.stack(found["neighbors"]).tolist() == samples[indices].tolist()
    np.testing.assert_array_equal(np.stack(found["distances"]), distances)
    assert found["neighbors"][0][0] == samples[0]  # an indexed query finds itself first, at distance 0
    schema = pq.read_schema(tmp_path / "nn.parquet")
    kind = schema.field("neighbors").type
    assert (kind.list_size, str(kind.value_type)) == (10, "string")  # a fixed-size list of ids per query

    np.save(tmp_path / "queries.npy", X[:25])
    assert run("search", tmp_path / "index", tmp_path / "queries.npy", "-k", 10, "-o", tmp_path / "npy.parquet") == 0
    from_npy = pd.read_parquet(tmp_path / "npy.parquet")
    assert from_npy["query"].tolist() == list(range(25))
    assert np.stack(from_npy["neighbors"]).tolist() == np.stack(found["neighbors"]).tolist()


def test_the_index_loads_into_hnswtransformer_for_a_pipeline(dataset, tmp_path):
    folder, X, _, labels = dataset
    assert run("index", folder, "-o", tmp_path / "index", "--n-neighbors", 7, "--metric", "cosine", "-q") == 0
    loaded = HNSWTransformer.load(tmp_path / "index")
    assert loaded.get_params() == HNSWTransformer(n_neighbors=7, metric="cosine", random_state=0).get_params()
    assert (loaded.n_samples_fit_, loaded.n_features_in_) == (N, 36)

    train, test = slice(0, N), slice(0, 60)
    frozen = make_pipeline(FrozenEstimator(loaded), KNeighborsClassifier(7, metric="precomputed"))
    fresh = make_pipeline(
        HNSWTransformer(n_neighbors=7, metric="cosine", random_state=0), KNeighborsClassifier(7, metric="precomputed")
    )
    predicted = frozen.fit(X[train], labels[train]).predict(X[test])
    np.testing.assert_array_equal(predicted, fresh.fit(X[train], labels[train]).predict(X[test]))
    assert loaded.n_samples_fit_ == N  # fitting the pipeline did not index the rows again
    assert (predicted == labels[test]).mean() > 0.9


def test_columns_ids_and_wide_layout(tmp_path):
    X, _ = features_and_labels(40)
    write_features(tmp_path / "wide.parquet", lambda: iter([X]), feature_names(), np.arange(40) * 10, None, "wide")
    assert run("index", tmp_path / "wide.parquet", "-o", tmp_path / "all", "-q") == 0
    assert HNSWTransformer.load(tmp_path / "all").n_features_in_ == 36
    assert pd.read_parquet(tmp_path / "all" / "ids.parquet")["sample"].tolist() == list(range(0, 400, 10))
    columns = "kl0,kl1,kl2"
    assert run("index", tmp_path / "wide.parquet", "-o", tmp_path / "kl", "--columns", columns, "-q") == 0
    assert HNSWTransformer.load(tmp_path / "kl").n_features_in_ == 3
    pd.DataFrame({"x": X[:, 0], "y": X[:, 1]}).to_parquet(tmp_path / "plain.parquet")  # no id column: row numbers
    assert run("index", tmp_path / "plain.parquet", "-o", tmp_path / "plain", "-q") == 0
    assert pd.read_parquet(tmp_path / "plain" / "ids.parquet")["sample"].tolist() == list(range(40))


def test_mistakes_are_refused_in_one_line(dataset, tmp_path, capsys):
    folder = dataset[0]
    index = tmp_path / "index"
    assert run("index", folder, "-o", index, "-q") == 0
    assert run("index", folder, "-o", index, "-q") == 1
    assert "exists; pass --overwrite" in error_line(capsys)
    assert run("index", folder, "-o", index, "--overwrite", "-q") == 0
    assert run("index", folder, "-o", folder, "--overwrite", "-q") == 1
    assert "is not an index written by skfungi index (it holds 'part-000000.parquet')" in error_line(capsys)
    assert run("index", folder, "-o", tmp_path / "other", "--columns", "embedding,colour", "-q") == 1
    assert "has no column 'colour'" in error_line(capsys)
    assert run("index", folder, "-o", tmp_path / "other", "--columns", "label", "-q") == 1
    assert "holds string, not floats" in error_line(capsys)
    assert run("search", index, folder, "-k", 301, "-o", tmp_path / "nn.parquet") == 1
    assert "-k 301 exceeds the 300 samples of the index" in error_line(capsys)
    np.save(tmp_path / "narrow.npy", np.zeros((3, 5), np.float32))
    assert run("search", index, tmp_path / "narrow.npy", "-o", tmp_path / "nn.parquet") == 1
    assert "the index takes float rows of 36 features" in error_line(capsys)
    assert run("search", folder, tmp_path / "narrow.npy", "-o", tmp_path / "nn.parquet") == 1
    assert "is not an index written by skfungi index" in error_line(capsys)
    assert not (tmp_path / "other").exists() and not (tmp_path / "nn.parquet").exists()


def test_the_help_of_the_new_commands_imports_nothing_heavy():
    """``skfungi index --help``, ``search --help`` and ``extract --help`` (with --workers) stay instant."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom skfungi.cli import main\n"
        "for argv in (['index', '--help'], ['search', '--help'], ['extract', '--help']):\n"
        "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
        "heavy = ('torch', 'numpy', 'pyarrow', 'hnswlib', 'dask', 'distributed', 'sklearn')\n"
        "print([name for name in heavy if name in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--workers N" in result.stdout and "--ef-construction N" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"


def write_table(path, **columns):
    import pyarrow as pa

    pq.write_table(pa.table({name: pa.array(values, from_pandas=False) for name, values in columns.items()}), path)
    return path


def test_inputs_the_index_cannot_take_are_refused_naming_the_file_and_row(tmp_path, capsys):
    """Each used to fail or pass silently: an empty FEATURES ('This HNSWTransformer instance is not fitted yet'),
    a NaN row (named by its row within the batch, without the file; a failed search also printed pyarrow's
    'Exception ignored ... write to closed file' traceback), a file that is not Parquet (pyarrow's message
    without the file), a misspelt --id-column (row numbers instead, silently), repeated or missing ids (indexed,
    then neighbours search could not tell apart)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    ids = [f"s{i}" for i in range(12)]
    features = {f"f{j}": X[:, j].copy() for j in range(3)}
    good = write_table(tmp_path / "good.parquet", sample=ids, **features)
    assert run("index", good, "-o", tmp_path / "index", "-q") == 0

    empty = write_table(tmp_path / "empty.parquet", sample=ids[:0], **{name: v[:0] for name, v in features.items()})
    assert run("index", empty, "-o", tmp_path / "out", "-q") == 1
    assert f"FEATURES {str(empty)!r} has no rows" in error_line(capsys)

    X[9, 1] = np.nan
    nan = write_table(tmp_path / "nan.parquet", sample=ids, **{f"f{j}": X[:, j] for j in range(3)})
    for command in (
        ["index", nan, "-o", tmp_path / "out"],
        ["search", tmp_path / "index", nan, "-o", tmp_path / "n.parquet"],
    ):
        assert run(*command, "--batch-size", 4, "-q") == 1
        captured = capsys.readouterr().err
        assert f"row 9 of {str(nan)!r} (id 's9') has a NaN" in captured and "Exception ignored" not in captured
    np.save(tmp_path / "nan.npy", X)
    assert run("search", tmp_path / "index", tmp_path / "nan.npy", "-o", tmp_path / "n.parquet", "--batch-size", 4) == 1
    assert "row 9 of" in error_line(capsys)

    X[9, 1] = 1e30  # finite in float32, but hnswlib's float32 distances overflow: the index named row 1 of its batch
    long_row = write_table(tmp_path / "long.parquet", sample=ids, **{f"f{j}": X[:, j] for j in range(3)})
    assert run("index", long_row, "-o", tmp_path / "out", "--batch-size", 4, "-q") == 1
    assert f"row 9 of {str(long_row)!r} (id 's9') has norm 1e+30" in error_line(capsys)

    (tmp_path / "text.parquet").write_text("not parquet")
    assert run("index", tmp_path / "text.parquet", "-o", tmp_path / "out", "-q") == 1
    assert f"cannot read {str(tmp_path / 'text.parquet')!r} as Parquet" in error_line(capsys)

    assert run("index", good, "-o", tmp_path / "out", "--id-column", "smaple", "-q") == 1
    assert "--id-column 'smaple' is not a column of" in error_line(capsys)
    assert run("search", tmp_path / "index", good, "-o", tmp_path / "n.parquet", "--id-column", "id", "-q") == 1
    assert "--id-column 'id' is not a column of" in error_line(capsys)

    repeated = write_table(tmp_path / "repeated.parquet", sample=[*ids[:5], "s3", *ids[6:]], **features)
    assert run("index", repeated, "-o", tmp_path / "out", "-q") == 1
    assert "holds the id 's3' twice (rows 3 and 5)" in error_line(capsys)
    missing = write_table(tmp_path / "missing.parquet", sample=[*ids[:7], None, *ids[8:]], **features)
    assert run("index", missing, "-o", tmp_path / "out", "-q") == 1
    assert "has no id in row 7" in error_line(capsys)
    assert not (tmp_path / "out").exists() and not (tmp_path / "n.parquet").exists()
    assert not [path.name for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary left


def test_an_index_whose_ids_file_is_missing_is_named(tmp_path, capsys):
    X, _ = features_and_labels(30)
    write_features(tmp_path / "f.parquet", lambda: iter([X]), feature_names(), np.arange(30).astype(str), None)
    assert run("index", tmp_path / "f.parquet", "-o", tmp_path / "index", "-q") == 0
    (tmp_path / "index" / "ids.parquet").unlink()
    assert run("search", tmp_path / "index", tmp_path / "f.parquet", "-o", tmp_path / "n.parquet", "-q") == 1
    assert "is not an index written by skfungi index" in error_line(capsys)
