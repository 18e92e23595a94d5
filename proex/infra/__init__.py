"""Infrastructure adapters: the only package that imports Ray, MLflow and Optuna (DESIGN.md)."""
