"""mmsearch encoders: towers, MRL heads, fusion, export and runtimes.

Importing this package is light (numpy, Pillow, tokenizers); torch, transformers,
onnxruntime and tensorrt are imported inside the loaders that need them.
"""

from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.errors import BackendMissingError, InputProblem, InvalidInputError
from mmsearch.encoders.runtimes import Embeddings, Encoder, load_encoder

__all__ = [
    "BackendMissingError", "Embeddings", "Encoder", "InputProblem", "InvalidInputError",
    "ModelConfig", "load_encoder",
]
