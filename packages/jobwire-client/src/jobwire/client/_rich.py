"""The hooks notebooks call on models, answered by the rendering module.

Models stay plain data: they inherit :class:`Rich` (``_repr_html_``) and call
:func:`frame` from ``to_pandas``, and :mod:`jobwire.client._display`, which
depends on the models and never the other way round, registers how each type
renders (``functools.singledispatch``). The package imports ``_display``
before anything else can run, so the registrations are always in place.
"""

from __future__ import annotations

from functools import singledispatch
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@singledispatch
def html(value: object) -> str:
    """Return the HTML a notebook shows for ``value``."""
    raise TypeError(f"no HTML rendering registered for {type(value).__name__}")


@singledispatch
def frame(value: object) -> pd.DataFrame:
    """Return ``value`` as a pandas data frame."""
    raise TypeError(f"no data frame rendering registered for {type(value).__name__}")


class Rich:
    """Displays as HTML in notebooks (Jupyter calls ``_repr_html_``)."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return html(self)
