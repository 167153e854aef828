"""The training wing: PyTorch VAEs (Prince, Understanding Deep Learning, ch. 17) trained on the ELBO,
scored by importance sampling, and exported to the ONNX model folder the service loads.

Entry point: `python -m training --help`.
"""
