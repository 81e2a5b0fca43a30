"""Datasets: what they are (specs), how their files are stored (formats), where files come
from (sources), the in-memory fast path (memory), the DataModules (datamodule, folder)."""

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.folder import FolderDataModule
from cnnlab.data.sources import ensure_dataset
from cnnlab.data.specs import SPECS, DatasetSpec, get_spec, normalize

__all__ = [
    "SPECS",
    "DatasetSpec",
    "FolderDataModule",
    "ImageDataModule",
    "ensure_dataset",
    "get_spec",
    "normalize",
]
