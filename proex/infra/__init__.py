"""Infrastructure adapters: the only package that imports Ray, MLflow and Optuna (tests/test_import_structure.py)."""
