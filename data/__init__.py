"""Bundled data (installed as ``numbaconc_data``): the four MNIST IDX files."""
