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

An argument that is itself a built object (a model's nets) reaches ``check_arguments`` as the
object from the constructor, and as its config's plain values from validation.
"""

from collections.abc import Mapping
from typing import Annotated, Any

from annotated_types import Ge, Gt, Le, Lt

PositiveInt = Annotated[int, Gt(0)]
NonNegativeInt = Annotated[int, Ge(0)]
PositiveFloat = Annotated[float, Gt(0)]
NonNegativeFloat = Annotated[float, Ge(0)]
Probability = Annotated[float, Ge(0), Le(1)]
OpenFraction = Annotated[float, Gt(0), Lt(1)]


def nets_agree(nets: dict[str, Any], **shared: Any) -> None:
    """A model's nets take some of its values by interpolation (``${model.latent_dim}``): refuse a
    net given another. ``nets``: each net by name, built or as its config's values."""
    for name, net in nets.items():
        for key, value in shared.items():
            theirs = net.get(key, value) if isinstance(net, Mapping) else getattr(net, key, value)
            if theirs != value:
                raise ValueError(
                    f"model.{name}.{key}={theirs} but model.{key}={value}: "
                    f"set model.{key} only (the nets interpolate it)"
                )
