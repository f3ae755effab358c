"""Ranges of constructor arguments, in their annotations: ``aigc.config.validation`` checks every
config value against the annotation of the argument it becomes, before anything is built.

    def __init__(self, latent_dim: PositiveInt, dropout: Probability = 0.0): ...

They are plain ``typing.Annotated`` types with ``annotated_types`` bounds: code that is not
validated reads them as ``int`` and ``float``. Floats must be finite wherever an annotation
checks them (``1e999`` is no learning rate).

Arguments that constrain one another (a width divisible by a head count) are stated by the
class in a static method ``check_arguments(**arguments)`` that raises ``ValueError``; validation
calls it with the configured values and the defaults, before anything is built, and the
constructor calls it too::

    @staticmethod
    def check_arguments(n_embd: int, n_head: int, **_) -> None:
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} must be divisible by n_head={n_head}")
"""

from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt

PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Probability = Annotated[float, Ge(0), Le(1)]
OpenFraction = Annotated[float, Gt(0), Lt(1)]
