"""sparsekit.keras: convert Keras 3 models (pruned Dense / Conv2D, TF-MOT
pruning wrappers) into the torch-free runtime.

    model = sparsekit.keras.convert(keras_model)   # a sparsekit.runtime.Model

Needs Keras 3 (pip install sparsekit[keras]).
"""
try:
    import keras as _keras  # noqa: F401  (the real Keras, absolute import)
except ImportError as e:
    raise ImportError("sparsekit.keras needs Keras 3: pip install sparsekit[keras]") from e

from sparsekit.convert.keras import convert  # noqa: E402

__all__ = ["convert"]
