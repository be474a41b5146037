"""The metric vocabulary: the stable snake_case names each measure reports.

A low module (no imports): measures, tables, pages, the sweep and the registry all take the
names from here, so none of them needs another to know what a measure reports. What each
number means: docs/methods.md.
"""

ID_METRICS = ("id_twonn", "id_mle", "id_pca90", "participation_ratio")
"""Intrinsic dimension (`id`): the default estimators; `id_<name>` for any scikit-dimension estimator."""

CURVATURE_METRICS = ("mapc", "curvature_sff", "mapc_scaled", "curvature_sff_scaled")
"""Curvature: Kaufman & Azencot's mean absolute principal curvature, the second fundamental
form's norm, and their dimensionless forms (times the neighbourhood radius)."""

CURVATURE_NULL_METRICS = ("curvature_sff_null", "curvature_sff_excess", "curvature_p_value")
"""The matched null of curvature_sff: the Gaussian's mean, the excess over it, the p-value (with
`_classes`: the class-conditional mixture's); the paper's protocol has them for mapc (`mapc_null`,
`mapc_excess`, `mapc_p_value`)."""

CURVATURE_TABLE_METRICS = (*CURVATURE_METRICS, "signal_to_noise", "id_twonn")
"""What a curvature table and page show (the null's metrics follow where they were computed)."""

MULTISCALE_METRICS = (
    "window_dim",
    "window_bending",
    "scale_dim_small",
    "scale_dim_large",
    "class_agreement_small",
    "class_agreement_large",
)
"""The multiscale profile's summary per layer (`multiscale`); the profile itself is in the details."""

COLLAPSE_METRICS = (
    "nc1",
    "nc1_trace_ratio",
    "cdnv",
    "etf_distance",
    "nc2_equinorm_means",
    "nc2_equiangular_means",
    "nc2_max_angle_means",
)
"""Neural collapse of any layer (Papyan, Han & Donoho 2020)."""

CLASSIFIER_METRICS = (
    "nc2_equinorm_weights",
    "nc2_equiangular_weights",
    "nc2_max_angle_weights",
    "nc3_self_duality",
    "nc4_ncc_mismatch",
)
"""Neural collapse metrics that need the classifier: only on the layer that feeds it."""

SPECTRA_METRICS = (
    "n_outliers",
    "outlier_variance_share",
    "between_variance_share",
    "outlier_bulk_ratio",
    "class_means_abs_cos",
)
"""Class/cross-class spectra of the feature covariance (Papyan 2020)."""

FISHER_METRICS = (
    "fisher_n_outliers",
    "fisher_outlier_bulk_ratio",
    "fisher_same_class_share",
    "fisher_class_means_share",
    "fisher_cross_class_share",
    "fisher_within_class_share",
)
"""The classifier's Fisher block split (Papyan 2020), on the layer that feeds it."""

CLASS_MANIFOLD_METRICS = ("critical_dim", "manifold_dim")
"""Cutting planes (Fort et al. 2022), per target class: d* and the class-manifold dimension D - d*."""

FAMILY_METRICS = (
    "curvature_sff",
    "curvature_sff_scaled",
    "volume_element",
    "curve_length",
    "curve_curvature",
    "sampled_curvature_sff",
)
"""Exact curvature of an input family's image (`family-curvature`), and the sampled estimate beside it."""

SIMILARITY_METRICS = (
    "linear_cka",
    "linear_cka_debiased",
    "rbf_cka",
    "rbf_cka_debiased",
    "procrustes",
    "angular_shape",
    "svcca",
    "rsa",
)
"""Representation similarity of a layer to its counterpart (`similarity`; CKA, shape metrics, SVCCA, RSA)."""
