"""Training the embedder (`mmsearch train encoder`, the `train` extra). Never imported at
serve time: the sidecar and the worker load the exported ONNX models instead."""
