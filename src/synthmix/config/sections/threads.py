"""``threads``: CPU threads of every computing stage (torch intra-op threads and the OpenMP/BLAS
pools). Float sums run in another order with another thread count, so results are bit-for-bit
repeatable for one CPU kind and one value of this param; 0 = PyTorch's default (the number of
cores: then results depend on the machine)."""

from typing import Annotated

from pydantic import Field

SCHEMA = Annotated[int, Field(ge=0)]
