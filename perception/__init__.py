"""perception: dense 3D / vision perception toolkit on PyTorch and mmengine."""
__version__ = '0.1.0'
