"""The serving wing: reads exported model folders (ONNX graphs + manifest) with onnxruntime.

Never imports torch or the training package; `service.manifest` is the contract both wings share.
"""
