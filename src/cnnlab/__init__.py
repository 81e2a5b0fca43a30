"""cnnlab: a PyTorch Lightning + Hydra template for convolutional image classifiers."""

import os

# albumentations asks PyPI for a newer release on import: a network call (seconds when offline,
# a request nobody asked for) at every start-up. Set before anything imports it.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
