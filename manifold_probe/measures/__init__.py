"""Layer profiles: run one geometry estimator over every layer of an `Activations` and
collect a `Result` (schema manifold-probe/result@1)."""
