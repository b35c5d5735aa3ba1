"""Layer shapes to benchmark, named after the models they come from.

A layer is Y[M, N] = X[M, K] · W[N, K]ᵀ (DESIGN.md). M is tokens for the
transformers (set with ``--m``, default 1 and 128) and pixels for ResNet-50's
1×1 convolutions at batch 1 and 224×224 input (fixed by the image size).

bert-base (hidden 768, FFN 3072): ffn_up 3072×768, ffn_down 768×3072 and one
  attention projection 768×768 (q, k, v and out all have this shape).
minilm (all-MiniLM-L6-v2, hidden 384, FFN 1536): ffn_up, ffn_down, attention.
resnet50: the 1×1 convolutions of one bottleneck per stage, as GEMMs with
  N = out channels, K = in channels, M = H·W:
  stage 2 (56×56) 64→256 and 256→64, stage 3 (28×28) 512→128 and 128→512,
  stage 4 (14×14) 1024→256 and 256→1024, stage 5 (7×7) 2048→512 and 512→2048.
"""
from collections import namedtuple

Layer = namedtuple("Layer", "model name n k m")

DEFAULT_M = (1, 128)

# model -> [(layer name, N, K)]; M comes from --m
_TRANSFORMERS = {
    "bert-base": [("ffn_up", 3072, 768), ("ffn_down", 768, 3072), ("attn", 768, 768)],
    "minilm": [("ffn_up", 1536, 384), ("ffn_down", 384, 1536), ("attn", 384, 384)],
}

# (layer name, N = out channels, K = in channels, M = pixels)
_RESNET50 = [
    ("s2_expand", 256, 64, 56 * 56), ("s2_reduce", 64, 256, 56 * 56),
    ("s3_reduce", 128, 512, 28 * 28), ("s3_expand", 512, 128, 28 * 28),
    ("s4_reduce", 256, 1024, 14 * 14), ("s4_expand", 1024, 256, 14 * 14),
    ("s5_reduce", 512, 2048, 7 * 7), ("s5_expand", 2048, 512, 7 * 7),
]

PRESETS = tuple(_TRANSFORMERS) + ("resnet50",)
M_PRESETS = tuple(_TRANSFORMERS)  # the presets whose M comes from --m


def preset_layers(name, m_values=DEFAULT_M):
    """The layers of preset `name`; transformer layers once per M in m_values."""
    if name == "resnet50":
        return [Layer("resnet50", lname, n, k, m) for lname, n, k, m in _RESNET50]
    if name not in _TRANSFORMERS:
        raise ValueError(f"preset: expected one of {PRESETS}, got {name!r}")
    return [Layer(name, lname, n, k, m)
            for m in m_values for lname, n, k in _TRANSFORMERS[name]]


def custom_layer(n, k, m):
    return Layer("custom", f"{n}x{k}", n, k, m)
