"""Datasets, transforms and converters. Importing registers every dataset class."""
from .super_resolution import PairedImageDataset, SyntheticSRDataset

__all__ = ['PairedImageDataset', 'SyntheticSRDataset']
