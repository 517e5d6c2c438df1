"""skipseq: Keras 3 sequence models built around skip connections."""

from skipseq import data, decoding, diagnostics, layers

__version__ = "0.1.0"

__all__ = ["data", "decoding", "diagnostics", "layers", "__version__"]
