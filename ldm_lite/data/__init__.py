"""Datasets (embedded offline data and readers for the original datasets) and the data module."""
from ldm_lite.data.datamodule import DataModuleFromConfig

__all__ = ["DataModuleFromConfig"]
