"""The reduced Fashion-MNIST claims run of docs/findings.md: the small preset's design with a smaller
zoo (fewer epochs and variants, a 1,000-image training subset), six seeds per condition.

    .venv/bin/python scripts/claims-reduced.py OUT
"""

import sys
from dataclasses import replace

from manifold_probe.study.claims.design import ZooSizes, design, zoo_models
from manifold_probe.study.claims.study import run_claims

SIZES = ZooSizes(seeds=6, variant_seeds=2, cnn_width=32, resnet_width=8, mlp_width=128, mlp_widths=(512,),
                 epochs=30, resnet_epochs=10, mlp_epochs=30, save_every=10, mlp_save_every=10,
                 label_noise=(0.3,), train_sizes=(500,), train_size=1000)  # fmt: skip
PLAN = replace(design("small"), preset="small-reduced",
               purpose="a reduced small preset (30 epochs, 1,000 training images, fewer variants; collapse "
               "and spectra on the own training images only): six runs per condition",
               models=tuple(zoo_models(SIZES)), n_points=300, perturb_images=6, curvature_centres=60,
               plane_runs=3, test_point_design=False)  # fmt: skip

if __name__ == "__main__":
    outcome = run_claims(sys.argv[1], data="fashion-mnist", plan=PLAN, progress=False)
    for f in outcome.findings:
        print(f.claim, f.value, f.interval, f.n, f.verdict, f.robustness, f.reason, sep=" | ")
