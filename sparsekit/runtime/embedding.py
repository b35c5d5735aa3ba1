"""BERT-style input embeddings: token + absolute position + token type.

    input_ids [B, T], token_type_ids [B, T] (ints; None: all 0)
        └ word[input_ids] + token_type[token_type_ids] + position[0:T] ─► [B, T, C]

Positions are 0..T-1 in every row whatever the padding (as Hugging Face's
BertEmbeddings with its default position ids). The LayerNorm that follows in
BERT is a separate LayerNorm layer.
"""
import numpy as np

from sparsekit._validate import as_float_array
from sparsekit.runtime.layers import Layer, register
from sparsekit.runtime.token_mask import check_range, int_ids


def _table(a, name, width=None):
    t = np.ascontiguousarray(as_float_array(a, name, ndim=2))
    if width is not None and t.shape[1] != width:
        raise ValueError(f"{name}: expected {width} columns like word, got shape {t.shape}")
    if t.shape[0] == 0:
        raise ValueError(f"{name}: the table has no rows")
    return t


@register
class Embedding(Layer):
    """Sum of three lookups: word [V, C], position [P, C] and token_type
    [types, C] tables. Inputs: input_ids and token_type_ids, integer [B, T]
    with T <= P; token_type_ids None means all 0 (as in Hugging Face's
    BertModel)."""

    n_inputs = 2

    def __init__(self, word, position, token_type):
        self.word = _table(word, "word")
        c = self.word.shape[1]
        self.position = _table(position, "position", c)
        self.token_type = _table(token_type, "token_type", c)

    def __call__(self, input_ids, token_type_ids):
        ids = int_ids(input_ids, "input_ids")
        types = None if token_type_ids is None else int_ids(token_type_ids, "token_type_ids")
        if types is not None and types.shape != ids.shape:
            raise ValueError(f"token_type_ids: expected shape {ids.shape} like input_ids, "
                             f"got {types.shape}")
        t = ids.shape[1]
        if t > self.position.shape[0]:
            raise ValueError(f"input_ids: {t} tokens exceed the {self.position.shape[0]} "
                             "positions of the model (truncate in the tokenizer)")
        check_range(ids, self.word.shape[0], "input_ids")
        # summed in Hugging Face's order: (word + token type) + position
        out = np.take(self.word, ids, axis=0)
        if types is None:
            out += self.token_type[0]
        else:
            check_range(types, self.token_type.shape[0], "token_type_ids")
            out += np.take(self.token_type, types, axis=0)
        out += self.position[:t]
        return out

    def arrays(self):
        return {"word": self.word, "position": self.position, "token_type": self.token_type}
