"""A trained model as something that generates: from its weights file alone (``generator``), as
an MLflow pyfunc model (``pyfunc``, loaded through the code file ``pyfunc_model``), logged as
the run's model when training ends (``logged_model``), and found in a store or its registry by
a run id or a model URI (``registry``).

The MLflow models that runs logged before this package existed load ``aigc.serving.GeneratorModel``
(their copy of ``pyfunc_model.py`` imports it): it is found here, imported only when asked for.
"""


def __getattr__(name: str):
    if name == "GeneratorModel":
        from aigc.serving.pyfunc import GeneratorModel

        return GeneratorModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
