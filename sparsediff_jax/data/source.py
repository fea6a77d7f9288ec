"""What a dataset plug-in returns: where its images come from, without reading any.

A dataset names its opener in its record (sparsediff_jax/registry.py, data/README.md):

    registry.DATASETS.add('name', registry.Dataset(source=open_name, ...))
    def open_name(config) -> Source: ...

`data/__init__.py` takes the subset (config.data.num_train_examples), loads it, streams it
and describes it for WORKDIR/dataset.json; a plug-in only says what its examples are.
"""

import dataclasses
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class Source:
  available: int | None                        # examples in the source (None: unbounded).
  order: str                                   # its canonical order, in words.
  ids: Callable[[int], list[str]]              # ids of its first n examples.
  load: Callable[[int, int], np.ndarray]       # uint8 [hi - lo, S, S, 3] of examples [lo, hi).
  facts: dict                                  # source-specific part of describe_dataset.
  bytes_per_example: int = 0                   # host memory per loaded example (0: S*S*3).
  # SHA-256 of the contents of the first n examples, for sources whose files can change
  # under the same ids (None: the ids and the facts define the contents).
  fingerprint: Callable[[int], str] | None = None

