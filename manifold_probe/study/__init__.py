"""The many-models study: training, model zoos, sweeps of the measures over checkpoints, the demo."""
