"""Pretrained weights that do not fit the model are refused, and the model libraries print nothing unless asked.

Each case of the audit is loaded through the spec a user would write: a timm
file of another architecture, one without its last block, an empty file, a
Lightning checkpoint, damaged files (timm, open_clip, Hugging Face), a
Hugging Face folder without a tokenizer or with weights of another width.
Before, each of these gave a model with random weights (or an error naming no
file); now each raises an error that names the file and what does not fit.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading
import types
from pathlib import Path

import open_clip
import pytest
import timm
import torch
import transformers
from conftest import tiny_bert
from huggingface_hub import constants
from safetensors.torch import save_file
from test_pretrained import CLIP_CFG, TIMM_ARCH, bert_folder, cache_repository, save_repository, tiny_vit_weights

from skfungi import FungiTransformer
from skfungi._utils.quiet import muted
from skfungi.backbones import CheckpointError, WeightsNotFoundError, resolve_backbone
from skfungi.backbones._checkpoints import replaced

TEXTS = ["the cat sat on the mat", "a big red dog ran fast", "the small blue bird sings"]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def timm_weights(name: str, seed: int = 0) -> dict:
    """The state dict of a timm model with its classifier, as timm's own checkpoints hold it."""
    torch.manual_seed(seed)
    return timm.create_model(name, pretrained=False).state_dict()


def saved(tmp_path: Path, name: str, state: dict) -> Path:
    path = tmp_path / name
    save_file(state, str(path)) if name.endswith(".safetensors") else torch.save(state, path)
    return path


def damaged(path: Path, how: str) -> Path:
    """``path`` cut in half, or replaced by bytes that are no safetensors header."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"\xff" * 64)
    return path


# -- timm ---------------------------------------------------------------------------------


def test_a_timm_file_of_the_model_with_its_classifier_loads_exactly(tmp_path):
    weights = timm_weights("test_vit", seed=1)
    backbone = resolve_backbone(f"timm:test_vit?pretrained={saved(tmp_path, 'vit.safetensors', weights)}")
    state = backbone.module.state_dict()
    assert state.keys() == {key for key in weights if not key.startswith("head.")}
    for key, value in state.items():
        assert torch.equal(value, weights[key]), key


@pytest.mark.parametrize("other", ["test_resnet", "test_efficientnet"])
def test_a_timm_file_of_another_architecture_is_refused(tmp_path, other):
    path = saved(tmp_path, f"{other}.safetensors", timm_weights(other))
    with pytest.raises(CheckpointError) as error:
        resolve_backbone(f"timm:test_vit?pretrained={path}")
    message = str(error.value)
    assert f"the weights in {path} do not fit the VisionTransformer" in message
    weights = len(timm.create_model("test_vit", num_classes=0).state_dict())
    assert f"{weights} of the model's {weights} weights are not in the file (cls_token, pos_embed," in message
    assert "keys of the file are not in the model" in message


def test_a_timm_file_without_the_last_block_is_refused(tmp_path):
    weights = timm_weights("test_vit")
    last = max(int(key.split(".")[1]) for key in weights if key.startswith("blocks."))
    path = saved(tmp_path, "cut.safetensors", {k: v for k, v in weights.items() if not k.startswith(f"blocks.{last}.")})
    with pytest.raises(
        CheckpointError, match=rf"\d+ of the model's \d+ weights are not in the file \(blocks\.{last}\."
    ):
        resolve_backbone(f"timm:test_vit?pretrained={path}")


def test_an_empty_safetensors_file_is_refused(tmp_path):
    path = saved(tmp_path, "empty.safetensors", {})
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(path))} do not fit .*: (\d+) of the model's \1 weights are not in"
    ):
        resolve_backbone(f"timm:test_vit?pretrained={path}")


def test_a_lightning_checkpoint_is_refused_naming_its_prefix(tmp_path):
    """{"state_dict": {"backbone.<key>": ...}}: timm unwraps "state_dict"; the prefix is named, never stripped."""
    weights = {f"backbone.{key}": value for key, value in timm_weights("test_vit").items()}
    path = saved(tmp_path, "epoch=3.ckpt", {"state_dict": weights, "epoch": 3})
    with pytest.raises(CheckpointError) as error:
        resolve_backbone(f"timm:test_vit?pretrained={path}")
    message = str(error.value)
    assert "keys of the file are not in the model (backbone.cls_token, backbone.pos_embed" in message
    assert "Every key of the file starts with 'backbone.'" in message
    assert "key.removeprefix('backbone.')" in message


def test_cached_hub_weights_are_checked_as_strictly(hub_cache, tmp_path):
    weights = tiny_vit_weights(seed=3)
    snapshot = cache_repository(hub_cache, f"skfungi-test/{TIMM_ARCH}.cached", save_repository(tmp_path / "r", {}))
    save_file({k: v for k, v in weights.items() if not k.startswith("blocks.1.")}, str(snapshot / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"repository skfungi-test/{TIMM_ARCH}.cached .* not in the file"):
        resolve_backbone(f"timm:{TIMM_ARCH}.cached")


# -- damaged files --------------------------------------------------------------------------


def clip_file(tmp_path: Path) -> tuple[str, Path, dict]:
    """An open_clip architecture (registered here), a file of its weights and the weights."""
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "skfungi-strict-clip.json").write_text(json.dumps(CLIP_CFG))
    open_clip.add_model_config(configs)
    torch.manual_seed(0)
    weights = open_clip.create_model("skfungi-strict-clip", pretrained=None).state_dict()
    return "skfungi-strict-clip", saved(tmp_path, "clip.safetensors", weights), weights


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("family", ["timm", "open_clip", "hf"])
def test_a_damaged_safetensors_file_is_named(tmp_path, family, how):
    if family == "timm":
        path = damaged(saved(tmp_path, "vit.safetensors", timm_weights("test_vit")), how)
        spec = f"timm:test_vit?pretrained={path}"
    elif family == "open_clip":
        arch, path, _ = clip_file(tmp_path)
        spec = f"open_clip:{arch}?pretrained={damaged(path, how)}"
    else:
        folder = bert_folder(tmp_path / "bert")
        path = damaged(folder / "model.safetensors", how)
        spec = f"hf:{folder}"
    with pytest.raises(CheckpointError, match=re.escape(f"{path} (SafetensorError: Error while deserializing header")):
        resolve_backbone(spec)


def test_an_open_clip_file_without_a_block_is_refused_naming_the_file(tmp_path):
    arch, _, weights = clip_file(tmp_path)
    cut = saved(tmp_path, "cut.safetensors", {k: v for k, v in weights.items() if "resblocks.1." not in k})
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(cut))} do not fit the CLIP .*visual\.transformer\.resblocks\.1\."
    ):
        resolve_backbone(f"open_clip:{arch}?pretrained={cut}")


# -- Hugging Face and sentence-transformers --------------------------------------------------------


def test_an_hf_folder_without_a_tokenizer_is_refused(tmp_path):
    """transformers builds a tokenizer of the 5 special tokens: every text would be [UNK]."""
    folder = tmp_path / "bert"
    tiny_bert().save_pretrained(folder)
    with pytest.raises(
        ValueError, match=f"loaded from {re.escape(str(folder))} knows only its 5 special tokens .*no tokenizer files"
    ):
        resolve_backbone(f"hf:{folder}")


def test_hf_weights_of_another_width_are_refused_showing_the_mismatch(tmp_path):
    folder = bert_folder(tmp_path / "bert")
    config = tiny_bert().config
    config.hidden_size, config.intermediate_size = 32, 64
    transformers.BertModel(config).save_pretrained(tmp_path / "wide")
    shutil.copy(tmp_path / "wide" / "model.safetensors", folder / "model.safetensors")
    message = (
        r"\d+ weights have another shape \(embeddings\.word_embeddings\.weight: \(27, 32\) in the file, \(27, 16\)"
    )
    with pytest.raises(
        CheckpointError, match=f"{re.escape(str(folder / 'model.safetensors'))} do not fit the BertModel .*{message}"
    ):
        resolve_backbone(f"hf:{folder}")


def test_hf_weights_without_a_block_are_refused_a_task_head_and_a_missing_pooler_are_not(tmp_path):
    folder = bert_folder(tmp_path / "bert")
    weights = tiny_bert().state_dict()
    save_file({k: v for k, v in weights.items() if ".layer.1." not in k}, str(folder / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"16 of the model's 39 weights are not in the file \(encoder\.layer\.1\."
    ):
        resolve_backbone(f"hf:{folder}")
    transformers.BertForMaskedLM(tiny_bert().config).save_pretrained(folder)  # cls.* head, no pooler
    masked = transformers.BertForMaskedLM.from_pretrained(folder).bert.state_dict()
    loaded = resolve_backbone(f"hf:{folder}").module.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in masked.items() if not key.startswith("pooler."))


def test_a_sentence_transformers_folder_is_loaded_strictly(tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer

    model = SentenceTransformer(modules=[Transformer(str(bert_folder(tmp_path / "bert"))), Pooling(16)], device="cpu")
    for name in ("cut", "untokenized"):
        model.save(str(tmp_path / name))
    weights = tiny_bert().state_dict()
    cut = tmp_path / "cut" / "model.safetensors"
    save_file({k: v for k, v in weights.items() if ".layer.1." not in k}, str(cut))
    with pytest.raises(CheckpointError, match=re.escape(f"{cut} do not fit the BertModel")):
        resolve_backbone(f"sentence_transformers:{tmp_path / 'cut'}")
    for tokenizer_file in (tmp_path / "untokenized").glob("tokenizer*"):
        tokenizer_file.unlink()
    with pytest.raises(ValueError, match="knows only its 5 special tokens"):
        resolve_backbone(f"sentence_transformers:{tmp_path / 'untokenized'}")


def test_a_resemblyzer_file_is_loaded_strictly(tmp_path):
    resemblyzer = pytest.importorskip("resemblyzer", reason="resemblyzer is not installed")
    state = resemblyzer.VoiceEncoder(device="cpu", verbose=False).state_dict()
    state = {key: value + 1 for key, value in state.items()}
    good = saved(tmp_path, "encoder.pt", {"model_state": state, "step": 1})
    loaded = resolve_backbone(f"resemblyzer:{good}").module.state_dict()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    cut = saved(tmp_path, "cut.pt", {"model_state": {k: v for k, v in state.items() if not k.startswith("linear.")}})
    with pytest.raises(
        CheckpointError, match=rf"{re.escape(str(cut))} do not fit the VoiceEncoder .*\(linear\.weight, linear\.bias\)"
    ):
        resolve_backbone(f"resemblyzer:{cut}")


# -- what the libraries print --------------------------------------------------------------------


@pytest.mark.parametrize("verbose", [0, 1])
def test_an_hf_fit_prints_nothing_unless_verbose(tmp_path, capfd, verbose):
    folder = bert_folder(tmp_path / "bert")
    capfd.readouterr()
    FungiTransformer(f"hf:{folder}", losses=("kl",), verbose=verbose, random_state=0).fit(TEXTS)
    out, err = capfd.readouterr()
    if verbose:
        assert "Loading weights" in err
    else:
        assert (out, err) == ("", "")


@pytest.mark.parametrize("verbose", [0, 1])
def test_a_failing_open_clip_spec_prints_only_the_error_unless_verbose(
    hub_cache, tmp_path, monkeypatch, capfd, verbose
):
    """open_clip logs ``ERROR:root:Failed to download weights`` (on the root logger, through logging.basicConfig
    where the root logger has no handler: pytest's handlers are taken away here, as a script has none)."""
    arch, _, _ = clip_file(tmp_path)
    tag = {"hf_hub": "skfungi-test/absent-clip/"}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, arch, {"absent": tag})
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    capfd.readouterr()
    with pytest.raises(WeightsNotFoundError, match=f"open_clip model '{arch}/absent'"):
        FungiTransformer(f"open_clip:{arch}/absent", losses=("kl",), verbose=verbose).fit(torch.rand(2, 3, 32, 32))
    out, err = capfd.readouterr()
    assert ("ERROR:root:Failed to download weights" in err) == bool(verbose)
    assert out == "" and (verbose or err == "")
    assert logging.getLogger().filters == []


def test_muting_restores_every_library_setting():
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as transformers_logging

    def settings():
        return (
            transformers_logging.get_verbosity(),
            transformers_logging.is_progress_bar_enabled(),
            are_progress_bars_disabled(),
            logging.getLogger("timm").level,
            logging.getLogger("sentence_transformers").level,
            list(logging.getLogger().filters),
            list(logging.getLogger().handlers),
        )

    before = settings()
    with muted(("huggingface_hub", "transformers", "sentence_transformers", "timm", "open_clip")):
        assert transformers_logging.get_verbosity() == logging.ERROR and are_progress_bars_disabled()
        assert logging.getLogger("timm").getEffectiveLevel() == logging.ERROR
    assert settings() == before


def test_a_library_function_is_replaced_for_the_calling_thread_only():
    library = types.ModuleType("library")
    library.load = lambda: "original"
    original = library.load
    seen = []
    with replaced(library, "load", lambda load: lambda: f"checked {load()}"):
        thread = threading.Thread(target=lambda: seen.append(library.load()))
        thread.start()
        thread.join()
        seen.append(library.load())
    assert seen == ["original", "checked original"]
    assert library.load is original
