"""Estimators that need the model and its gradients (cutting planes)."""
