"""One module per graph node; installed as ``rlm_graph.nodes``.

Each module has a ``make_*`` factory that binds the node to the graph's
:class:`rlm_graph.settings.Settings`.
"""

from rlm_graph.nodes.check import make_check, route_after_check
from rlm_graph.nodes.direct_answer import make_direct_answer
from rlm_graph.nodes.process_chunk import make_chunk_error_handler, make_process_chunk
from rlm_graph.nodes.split import make_split
from rlm_graph.nodes.synthesize import make_synthesize

__all__ = [
    "make_check",
    "make_chunk_error_handler",
    "make_direct_answer",
    "make_process_chunk",
    "make_split",
    "make_synthesize",
    "route_after_check",
]
