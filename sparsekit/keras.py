"""sparsekit.keras: convert Keras 3 models (pruned Dense / Conv2D, TF-MOT
pruning wrappers) into the torch-free runtime.

    model = sparsekit.keras.convert(keras_model)   # a sparsekit.runtime.Model

Needs Keras 3 (pip install "sparsekit[keras]", or from a clone
pip install -e ".[keras]").
"""
import importlib.util

try:
    import keras as _keras  # noqa: F401  (the real Keras, absolute import)
except ImportError as e:
    try:
        _installed = importlib.util.find_spec("keras") is not None
    except (ImportError, ValueError):
        _installed = False
    if not _installed:
        raise ImportError("sparsekit.keras needs Keras 3: "
                          'pip install "sparsekit[keras]" '
                          '(from a clone: pip install -e ".[keras]")') from e
    # Keras is there but its backend is not (default: TensorFlow)
    raise ImportError(f"sparsekit.keras: Keras is installed but cannot load its backend ({e}); "
                      "install that backend or choose another, e.g. KERAS_BACKEND=torch "
                      "(any Keras 3 backend works)") from e

from sparsekit.convert.keras import convert  # noqa: E402

__all__ = ["convert"]
