"""cnnlab: a PyTorch Lightning + Hydra template for convolutional image classifiers."""

__version__ = "0.1.0"
