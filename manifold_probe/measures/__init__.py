"""Layer profiles: run one geometry estimator over every layer of a `LayerArrays` and
collect a `Result` (schema manifold-probe/result@1)."""
