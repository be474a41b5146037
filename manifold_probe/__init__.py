"""manifold-probe: the geometry of neural-network representations, layer by layer."""

__version__ = "0.1.0"
