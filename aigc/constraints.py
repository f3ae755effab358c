"""Ranges of constructor arguments, in their annotations: ``aigc.validation`` checks every
config value against the annotation of the argument it becomes, before anything is built.

    def __init__(self, latent_dim: PositiveInt, dropout: Probability = 0.0): ...

They are plain ``typing.Annotated`` types with ``annotated_types`` bounds: code that is not
validated reads them as ``int`` and ``float``.
"""

from typing import Annotated

from annotated_types import Ge, Gt, Le, Lt

PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Probability = Annotated[float, Ge(0), Le(1)]
OpenFraction = Annotated[float, Gt(0), Lt(1)]
