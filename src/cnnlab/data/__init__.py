"""Datasets: where files come from (sources), the in-memory fast path, the DataModule."""

from cnnlab.data.datamodule import ImageDataModule
from cnnlab.data.sources import SPECS, DatasetSpec, ensure_dataset, get_spec

__all__ = ["SPECS", "DatasetSpec", "ImageDataModule", "ensure_dataset", "get_spec"]
