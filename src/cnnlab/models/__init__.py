"""The nets: plain ``nn.Module``s built for a given input shape and class count."""

from cnnlab.models.alexnet import AlexNet
from cnnlab.models.base import Net
from cnnlab.models.lenet import LeNet5, LeNet5Classic
from cnnlab.models.mlp import MLP
from cnnlab.models.summary import count_params, layer_rows, layer_table
from cnnlab.models.vgg import VGG

__all__ = [
    "MLP",
    "VGG",
    "AlexNet",
    "LeNet5",
    "LeNet5Classic",
    "Net",
    "count_params",
    "layer_rows",
    "layer_table",
]
