"""A griffe extension for the API reference: Sphinx roles in docstrings shown as code.

The docstrings are Google style, but some name other objects the Sphinx way
(:func:`create_rlm_graph`), which mkdocstrings would print as is. This shows the
target as inline code (`create_rlm_graph`), without touching the docstrings.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|attr|data|mod|obj|exc|const):`~?([^`]+)`")


class SphinxRoles(griffe.Extension):
    """Rewrite ``:role:`target``` as ```target``` in every docstring griffe loads."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
