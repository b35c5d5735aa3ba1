"""sparsekit.keras.convert against Keras's own output (torch backend), float32,
tolerance 1e-5 relative to the output magnitude."""
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

import sparsekit  # noqa: E402
import sparsekit.keras as skk  # noqa: E402
from sparsekit import runtime as R  # noqa: E402

layers = keras.layers


def kout(model, x):
    return keras.ops.convert_to_numpy(model(x))


def close(got, ref, tol=1e-5):
    np.testing.assert_allclose(got, ref, rtol=tol, atol=tol * (np.abs(ref).max() + 1))


def prune_kernels(model, rng, density=0.1):
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            k = keras.ops.convert_to_numpy(layer.kernel)
            layer.kernel.assign(np.where(rng.random(k.shape) < density, k, 0).astype(k.dtype))
    return model


def test_sequential_cnn_pruned(rng):
    keras.utils.set_random_seed(0)
    m = keras.Sequential([
        keras.Input((9, 9, 2)),
        layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        layers.MaxPooling2D(padding="same"),
        layers.Conv2D(6, 1), layers.ReLU(),
        layers.Conv2D(5, (2, 3), padding="valid", dilation_rate=1),
        layers.Flatten(), layers.Dropout(0.5),
        layers.Dense(32, activation="gelu"), layers.LayerNormalization(epsilon=1e-4),
        layers.Dense(10), layers.Activation("softmax"),
    ])
    prune_kernels(m, rng)
    r = skk.convert(m, min_sparsity=0.5)
    x = rng.standard_normal((4, 9, 9, 2)).astype(np.float32)
    close(r(x), kout(m, x))
    linear_like = [a for a in r.layers if isinstance(a, (R.Linear, R.Conv2d))]
    assert len(linear_like) == 5
    assert all(isinstance(a.weight, sparsekit.CSRMatrix) for a in linear_like)
    assert len(r.report) == 5 and r.report[0]["chosen"] == "csr fp32"
    assert [row["module"] for row in r.report] == ["Conv2D", "Conv2D", "Conv2D", "Dense", "Dense"]
    table = str(r.report).splitlines()  # prints as a table: a header, one line per layer
    assert len(table) == 6 and table[0].split() == ["name", "module", "chosen", "reason"]
    assert all(line.startswith(row["name"]) and row["reason"] in line for line, row in
               zip(table[1:], r.report))


def test_dense_kernel_layout(rng):
    keras.utils.set_random_seed(1)
    m = keras.Sequential([keras.Input((7,)), layers.Dense(3, use_bias=False)])
    r = skk.convert(m)
    k = keras.ops.convert_to_numpy(m.layers[0].kernel)  # [in, out]
    np.testing.assert_array_equal(r.layers[0].weight, k.T)
    x = rng.standard_normal((2, 7)).astype(np.float32)
    close(r(x), x @ k)


def test_functional_residual(rng):
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 3))
    h = layers.Conv2D(3, 3, padding="same", activation="relu")(inp)
    h = layers.Add()([h, inp])
    h = layers.AveragePooling2D(2)(h)
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(4, activation="tanh")(h)
    m = keras.Model(inp, out)
    r = skk.convert(m)
    x = rng.standard_normal((3, 8, 8, 3)).astype(np.float32)
    close(r(x), kout(m, x))
    assert sum(isinstance(a, R.Transpose) for a in r.layers) == 1  # input moved once


class PruneLowMagnitude(layers.Wrapper):
    """Stand-in with TF-MOT's shape (its package needs TF + Keras 2): a wrapper
    whose `mask` weight multiplies the wrapped Dense kernel in call()."""

    def build(self, input_shape=None):
        self.layer.build(input_shape)
        self.mask = self.add_weight(name="mask", shape=self.layer.kernel.shape,
                                    initializer="ones", trainable=False)
        self.pruning_vars = [(self.layer.kernel, self.mask, None)]
        self.built = True

    def call(self, x):
        k = self.layer.kernel * self.mask
        return self.layer.activation(keras.ops.matmul(x, k) + self.layer.bias)


def test_prune_low_magnitude_wrapper_mask(rng):
    keras.utils.set_random_seed(3)
    wrapped = PruneLowMagnitude(layers.Dense(16, activation="relu"))
    m = keras.Sequential([keras.Input((20,)), wrapped, layers.Dense(3)])
    mask = (rng.random((20, 16)) < 0.15).astype(np.float32)
    wrapped.mask.assign(mask)
    r = skk.convert(m, min_sparsity=0.5)
    x = rng.standard_normal((5, 20)).astype(np.float32)
    close(r(x), kout(m, x))
    assert isinstance(r.layers[0].weight, sparsekit.CSRMatrix)
    assert "mask applied" in r.report[0]["name"]
    k = keras.ops.convert_to_numpy(wrapped.layer.kernel)
    np.testing.assert_array_equal(r.layers[0].weight.to_dense(), (k * mask).T)


def test_converted_model_saves(tmp_path, rng):
    keras.utils.set_random_seed(4)
    m = prune_kernels(keras.Sequential([keras.Input((6, 6, 1)), layers.Conv2D(4, 3),
                                        layers.Flatten(), layers.Dense(5)]), rng, 0.2)
    r = skk.convert(m)
    sparsekit.save(r, tmp_path / "k.spk")
    x = rng.standard_normal((2, 6, 6, 1)).astype(np.float32)
    np.testing.assert_array_equal(sparsekit.load(tmp_path / "k.spk")(x), r(x))


def test_unsupported_layers_named():
    m = keras.Sequential([keras.Input((4, 5)), layers.LSTM(3)])
    with pytest.raises(ValueError, match="LSTM"):
        skk.convert(m)
    m = keras.Sequential([keras.Input((4,)), layers.Dense(3, activation="elu")])
    with pytest.raises(ValueError, match="elu"):
        skk.convert(m)
    with pytest.raises(TypeError, match="model"):
        skk.convert("model")


def test_quantize_dynamic(rng):
    """int8 on import: within 3% of Keras's float output (per-row activations)."""
    keras.utils.set_random_seed(5)
    m = keras.Sequential([keras.Input((8, 8, 2)), layers.Conv2D(8, 3, activation="relu"),
                          layers.Flatten(), layers.Dense(16, activation="relu"),
                          layers.Dense(4)])
    r = skk.convert(m, quantize="dynamic", min_sparsity=1.0)
    assert all(isinstance(a.weight, sparsekit.QuantizedMatrix)
               for a in r.layers if isinstance(a, (R.Linear, R.Conv2d)))
    x = rng.standard_normal((6, 8, 8, 2)).astype(np.float32)
    ref = kout(m, x)
    assert np.abs(r(x) - ref).max() <= 0.03 * np.abs(ref).max()
