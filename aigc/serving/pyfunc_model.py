"""The file MLflow runs to load a run's model (models from code: nothing is unpickled).

``aigc.serving.save_pyfunc`` copies it into the model folder; loading imports ``aigc``, which
must be installed where the model is loaded or served.
"""

import mlflow.models

from aigc.serving.pyfunc import GeneratorModel

mlflow.models.set_model(GeneratorModel())
