"""Estimators on arrays only: neighbours, intrinsic dimension, curvature, collapse, spectra.

Nothing in here knows about nn.Module; every function takes arrays and returns arrays or a
frozen dataclass.
"""
