"""Importers from frameworks: torch.py (drop-in accelerate), onnx.py, keras.py.
Each imports its framework lazily; use them through sparsekit.torch,
sparsekit.onnx and sparsekit.keras, which say which extra to install."""
