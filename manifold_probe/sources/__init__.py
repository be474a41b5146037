"""Where models and data come from: checkpoints, torchvision architectures, data specs, the zoo.

- `data`: `load_data(spec, split=, n_points=, seed=)` for `digits`, `npz:PATH`,
  `imagefolder:ROOT`, `cifar10:ROOT`, `cifar100:ROOT`, `mnist:ROOT`, `fashion-mnist[:ROOT]`
  (never downloading): a dispatcher over `formats`, one module per format (`digits`, `npz`,
  `imagefolder`, `cifar` with its bounded unpickler `safe_pickle`, `idx`, `tensors`).
- `zoo`: `build_model(arch, **arch_args)` for `digits-cnn`, `digits-mlp`, `small-resnet`,
  `torchvision:NAME`.
- `checkpoint`: the project's checkpoint format `manifold-probe/checkpoint@1`.
- `models`: `load_model(path, ...)` for checkpoints, state_dicts, TorchScript, torch.export
  programs and (trusted) pickled modules, with a weights digest.

Submodules are imported where used (torchvision is slow to import).
"""
