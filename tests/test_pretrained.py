"""Pretrained weights loaded by spec the libraries' own way, from a Hugging Face Hub cache or a local file.

Each test writes a tiny random model in the layout its library reads (a hub
cache repository: ``models--<org>--<name>/snapshots/<commit>/...`` plus
``refs/main``) into a temporary cache, loads it back through the spec a user
would write, and compares the weights with the saved ones. No network: the
Hub client runs offline (as with ``HF_HUB_OFFLINE=1``), or, for the tests of
an unreachable network, against an endpoint where nothing listens.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import pickle
import shutil
import socket
import threading
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
from conftest import SPECIAL_TOKENS, WORDS, engine_gradients, reference_gradient, tiny_bert
from huggingface_hub import constants
from open_clip.model import CLIP
from safetensors.torch import save_file
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer

from skfungi import FungiTransformer
from skfungi.backbones import SentenceTransformerBackbone, TimmBackbone, WeightsNotFoundError, resolve_backbone
from skfungi.backbones._hub import reachable
from skfungi.losses import KLLoss, SimCLRLoss

TIMM_ARCH = "skfungi_test_vit"
TIMM_SIZE = {"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 2, "num_heads": 2}
TIMM_CFG = {"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.9, "num_classes": 0}
# timm's registry reads a model's pretrained configs from its module's `default_cfgs`, as for its own models
default_cfgs = generate_default_cfgs(
    {
        f"{TIMM_ARCH}.cached": {"hf_hub_id": f"skfungi-test/{TIMM_ARCH}.cached", **TIMM_CFG},
        f"{TIMM_ARCH}.absent": {"hf_hub_id": f"skfungi-test/{TIMM_ARCH}.absent", **TIMM_CFG},
        f"{TIMM_ARCH}.url_only": {"url": "http://127.0.0.1:1/skfungi_test_vit.pth", **TIMM_CFG},
    }
)


@register_model
def skfungi_test_vit(pretrained=False, **kwargs):
    """A tiny ViT (32 px, width 16) whose weights live in a test's hub cache."""
    return build_model_with_cfg(VisionTransformer, TIMM_ARCH, pretrained, **{**TIMM_SIZE, **kwargs})


@register_model
def skfungi_test_vit_untrained(pretrained=False, num_classes=0, **kwargs):
    """A tiny ViT timm knows no pretrained weights for (it ignores timm's config arguments)."""
    return VisionTransformer(**TIMM_SIZE, num_classes=num_classes)


CLIP_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
}
TEXTS = ["the cat sat on the mat", "a big red dog ran fast", "", "the small blue bird sings"]


def cache_repository(cache: Path, repo_id: str, folder: Path) -> Path:
    """Copy ``folder`` into ``cache`` as the Hub client stores a downloaded repository; returns the snapshot."""
    repository = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()
    snapshot = repository / "snapshots" / commit
    shutil.copytree(folder, snapshot)
    (repository / "refs").mkdir()
    (repository / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hub cache, read offline (what HF_HUB_CACHE=<dir> HF_HUB_OFFLINE=1 give the libraries)."""
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


@pytest.fixture
def unreachable_hub(hub_cache, monkeypatch):
    """HF_HUB_OFFLINE not set, and an endpoint where nothing listens; the Hub client's back-off sleeps fail."""
    with socket.socket() as probe:  # a free local port, closed again: connections to it are refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")

    def no_waiting(seconds):
        raise AssertionError(f"the Hub client waited {seconds} s to retry a request")

    monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", no_waiting)
    return hub_cache


def tiny_vit_weights(seed: int) -> dict:
    torch.manual_seed(seed)
    return VisionTransformer(**TIMM_SIZE, num_classes=0).state_dict()


def assert_same_weights(module: torch.nn.Module, expected: dict):
    state = module.state_dict()
    assert state.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def save_repository(folder: Path, files: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content) if isinstance(content, str) else save_file(content, str(path))
    return folder


def bert_folder(folder: Path, seed: int = 0) -> Path:
    """A tiny random BERT saved with save_pretrained, with its word-level vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL_TOKENS + WORDS) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    tiny_bert(seed=seed).save_pretrained(folder)
    return folder


# -- timm ---------------------------------------------------------------------------------


def test_timm_name_loads_the_cached_hub_weights(hub_cache, tmp_path):
    weights = tiny_vit_weights(seed=3)
    cache_repository(hub_cache, f"skfungi-test/{TIMM_ARCH}.cached", save_repository(tmp_path / "r", {}))
    save_file(weights, str(next(hub_cache.glob("models--*/snapshots/*")) / "model.safetensors"))
    for spec in (f"timm:{TIMM_ARCH}.cached", f"timm:{TIMM_ARCH}"):  # the default tag is the first one
        backbone = resolve_backbone(spec)
        assert isinstance(backbone, TimmBackbone)
        assert_same_weights(backbone.module, weights)
    assert (backbone.input_size, backbone.interpolation, backbone.crop_pct) == (32, "bicubic", 0.9)


def test_timm_local_file_by_spec_and_by_adapter(tmp_path):
    weights = tiny_vit_weights(seed=4)
    path = tmp_path / "weights.safetensors"
    save_file(weights, str(path))
    assert_same_weights(resolve_backbone(f"timm:{TIMM_ARCH}?pretrained={path}").module, weights)
    assert_same_weights(TimmBackbone(TIMM_ARCH, pretrained=str(path)).module, weights)
    with pytest.raises(FileNotFoundError, match="timm weights file not found"):
        TimmBackbone(TIMM_ARCH, pretrained=str(tmp_path / "missing.pth"))


def test_timm_missing_weights_fail_naming_the_model_the_cache_and_the_local_way(hub_cache):
    with pytest.raises(WeightsNotFoundError) as error:
        resolve_backbone(f"timm:{TIMM_ARCH}.absent")
    message = str(error.value)
    assert f"timm model '{TIMM_ARCH}.absent'" in message and "offline (HF_HUB_OFFLINE is set)" in message
    assert str(hub_cache) in message and f"skfungi-test/{TIMM_ARCH}.absent" in message
    assert f"'timm:{TIMM_ARCH}.absent?pretrained=/path/to/model.safetensors'" in message


def test_missing_weights_fail_without_waiting_when_the_hub_is_unreachable(unreachable_hub):
    """HF_HUB_OFFLINE unset and no server: one refused connection, then the cache, then the error."""
    specs = {
        f"timm:{TIMM_ARCH}.absent": "timm model",
        f"timm:{TIMM_ARCH}.url_only": "timm model",
        "open_clip:hf-hub:skfungi-test/absent-clip": "open_clip model",
        "hf:skfungi-test/absent-bert": "Hugging Face model",
        "sentence_transformers:skfungi-test/absent-st": "sentence-transformers model",
    }
    for spec, kind in specs.items():
        unreachable = r"offline \(http://127\.0\.0\.1:\d+\S* cannot be reached\) and not in the local cache"
        with pytest.raises(WeightsNotFoundError, match=f"pretrained weights of {kind} .*: {unreachable}"):
            resolve_backbone(spec)
    assert constants.HF_HUB_OFFLINE is False  # the Hub client's setting is restored


def test_any_http_answer_counts_as_reachable_a_refused_connection_does_not(unreachable_hub):
    class Missing(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    with http.server.HTTPServer(("127.0.0.1", 0), Missing) as server:
        thread = threading.Thread(target=server.handle_request)
        thread.start()
        assert reachable(f"http://127.0.0.1:{server.server_port}/any/file")
        thread.join()
    assert not reachable(constants.ENDPOINT)


def test_names_without_weights_are_never_random_silently():
    with pytest.raises(ValueError, match=f"timm has no pretrained weights for '{TIMM_ARCH}_untrained'"):
        resolve_backbone(f"timm:{TIMM_ARCH}_untrained")
    with pytest.raises(ValueError, match=r"Invalid pretrained tag \(nope\)"):
        resolve_backbone(f"timm:{TIMM_ARCH}.nope")
    with pytest.raises(ValueError, match="unknown timm model 'no_such_model'"):
        resolve_backbone("timm:no_such_model")
    with pytest.raises(ValueError, match="open_clip model 'ViT-B-32' needs a pretrained tag"):
        resolve_backbone("open_clip:ViT-B-32")
    with pytest.raises(ValueError, match="'skfungi' backbones take no '\\?pretrained=' option"):
        resolve_backbone("skfungi:mobilenet_v2?pretrained=false")


def test_random_weights_from_a_spec_are_seeded_and_leave_torch_alone():
    spec = f"timm:{TIMM_ARCH}_untrained?pretrained=false"
    state = torch.random.get_rng_state()
    first = resolve_backbone(spec, seed=5).module.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    assert_same_weights(resolve_backbone(spec, seed=5).module, first)
    other = resolve_backbone(spec, seed=6).module.state_dict()
    assert not torch.equal(other["blocks.1.attn.proj.weight"], first["blocks.1.attn.proj.weight"])


# -- open_clip ---------------------------------------------------------------------------


def tiny_clip_repository(folder: Path, seed: int) -> dict:
    """An open_clip hub repository: open_clip_config.json and open_clip_model.safetensors; returns the weights."""
    torch.manual_seed(seed)
    weights = CLIP(**CLIP_CFG).state_dict()
    preprocess = {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "interpolation": "bicubic"}
    config = json.dumps({"model_cfg": CLIP_CFG, "preprocess_cfg": preprocess})
    save_repository(folder, {"open_clip_config.json": config, "open_clip_model.safetensors": weights})
    return weights


def test_open_clip_hub_repository_loads_both_towers(hub_cache, tmp_path, images):
    weights = tiny_clip_repository(tmp_path / "clip", seed=2)
    cache_repository(hub_cache, "skfungi-test/tiny-clip", tmp_path / "clip")
    image = resolve_backbone("open_clip:hf-hub:skfungi-test/tiny-clip")
    assert_same_weights(image.module, weights)
    assert (image.mean, image.std, image.interpolation) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "bicubic")
    text = resolve_backbone("open_clip:hf-hub:skfungi-test/tiny-clip", modality="text")
    assert_same_weights(text.module, weights)
    assert text.tokenizer.context_length == 16


def test_open_clip_architecture_and_tag(hub_cache, tmp_path, monkeypatch):
    """A tag resolves through open_clip's table of pretrained weights (extended here as a new release would)."""
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "skfungi-tagged-clip.json").write_text(json.dumps(CLIP_CFG))
    open_clip.add_model_config(folder)
    tag = {"hf_hub": "skfungi-test/tagged-clip/", "interpolation": "bilinear"}
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, "skfungi-tagged-clip", {"skfungi": tag})
    weights = tiny_clip_repository(tmp_path / "clip", seed=3)
    cache_repository(hub_cache, "skfungi-test/tagged-clip", tmp_path / "clip")
    backbone = resolve_backbone("open_clip:skfungi-tagged-clip/skfungi")
    assert_same_weights(backbone.module, weights)
    assert backbone.interpolation == "bilinear"  # the tag's preprocessing
    (tmp_path / "clip" / "open_clip_config.json").unlink()
    local = resolve_backbone(
        f"open_clip:skfungi-tagged-clip?pretrained={tmp_path / 'clip/open_clip_model.safetensors'}"
    )
    assert_same_weights(local.module, weights)


# -- Hugging Face and sentence-transformers ---------------------------------------------------


def test_hf_hub_id_loads_model_and_tokenizer_from_the_cache(hub_cache, tmp_path):
    folder = bert_folder(tmp_path / "bert", seed=5)
    cache_repository(hub_cache, "skfungi-test/tiny-bert", folder)
    backbone = resolve_backbone("hf:skfungi-test/tiny-bert")
    assert_same_weights(backbone.module, tiny_bert(seed=5).state_dict())
    assert backbone.embed(TEXTS).shape == (len(TEXTS), 16)
    random = resolve_backbone("hf:skfungi-test/tiny-bert?pretrained=false", seed=0).module.state_dict()
    assert not torch.equal(random["pooler.dense.weight"], tiny_bert(seed=5).state_dict()["pooler.dense.weight"])
    with pytest.raises(WeightsNotFoundError, match=f"Looked in the Hugging Face Hub cache {hub_cache}"):
        resolve_backbone("hf:skfungi-test/absent-bert")


def sentence_transformer(tmp_path: Path, pooling: str = "cls"):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    word = Transformer(str(bert_folder(tmp_path / "bert", seed=6)), max_seq_length=12)
    return SentenceTransformer(modules=[word, Pooling(16, pooling_mode=pooling), Normalize()], device="cpu")


def test_sentence_transformers_hub_id_loads_the_saved_pipeline(hub_cache, tmp_path):
    pytest.importorskip("sentence_transformers")
    model = sentence_transformer(tmp_path)
    model.save(str(tmp_path / "st"))
    cache_repository(hub_cache, "skfungi-test/tiny-st", tmp_path / "st")
    backbone = resolve_backbone("sentence_transformers:skfungi-test/tiny-st")
    assert isinstance(backbone, SentenceTransformerBackbone)
    assert_same_weights(backbone.module, model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(backbone.embed(TEXTS), model.encode(TEXTS, convert_to_tensor=True))


def test_sentence_transformer_object_embeds_as_encode_does(tmp_path):
    """Its own tokenisation (max_seq_length), CLS pooling and Normalize; true gradients through its forward;
    a fitted transformer pickles with it."""
    pytest.importorskip("sentence_transformers")
    model = sentence_transformer(tmp_path).double()
    losses = (KLLoss(latent_dim=8), SimCLRLoss(n_views=3, latent_dim=8, n_negatives=2))
    fungi = FungiTransformer(model, losses=losses, random_state=0).fit(TEXTS)
    assert fungi.layer_ == "0.model.encoder.layer.1.attention.output.dense"
    embedding = fungi.transform(TEXTS)[:, :16]
    expected = F.normalize(model.encode(TEXTS, convert_to_tensor=True), dim=1).numpy()
    np.testing.assert_allclose(embedding, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(fungi)).transform(TEXTS), fungi.transform(TEXTS))
    for loss in fungi.losses_:
        fast = engine_gradients(fungi, loss, TEXTS)
        for index, text in enumerate(TEXTS):
            torch.testing.assert_close(fast[index], reference_gradient(fungi, loss, text), rtol=1e-9, atol=1e-12)
