"""The code MLflow runs to load a served model ("models from code": nothing is pickled): the pyfunc is a
`served_model.ServedRecommender`, which reads the logged tables in its `load_context`."""

from mlflow.models import set_model

from proex.infra.served_model import ServedRecommender

set_model(ServedRecommender())
