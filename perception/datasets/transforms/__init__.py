"""Data transforms (loading, augmentation, packing), registered in ``TRANSFORMS``."""
