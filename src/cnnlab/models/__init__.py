"""The nets: plain ``nn.Module``s built for a given input shape and class count.

The zoo's nets are exported here for convenience; a net of your own needs no entry here
(its YAML names it by module path, like ``conf/model/resnet20.yaml``).
"""

from cnnlab.models.alexnet import AlexNet
from cnnlab.models.base import Net
from cnnlab.models.lenet import LeNet5, LeNet5Classic
from cnnlab.models.mlp import MLP
from cnnlab.models.summary import (
    check_forward,
    count_params,
    find_convs,
    layer_rows,
    layer_table,
    model_title,
)
from cnnlab.models.vgg import VGG

__all__ = [
    "MLP",
    "VGG",
    "AlexNet",
    "LeNet5",
    "LeNet5Classic",
    "Net",
    "check_forward",
    "count_params",
    "find_convs",
    "layer_rows",
    "layer_table",
    "model_title",
]
