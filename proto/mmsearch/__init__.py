"""mmsearch: the distribution's own namespace — CLI, configuration, and the generated gRPC
stubs of the public contract under `mmsearch.v1` (generated from proto/mmsearch/v1/*.proto).
"""

__version__ = "0.1.0"
