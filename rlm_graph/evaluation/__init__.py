"""``rlm-graph eval``: measure, on your own model, what each reading strategy is worth.

Builds long-context tasks with exact gold answers from the public-domain books
shipped with the package, runs the model alone and the graph in each mode on
them, and reports accuracy against length with the calls, tokens and cost.
"""

from rlm_graph.evaluation.runner import DEFAULT_LENGTHS, EvaluationCancelled, aevaluate, evaluate
from rlm_graph.evaluation.scoring import score_answer
from rlm_graph.evaluation.systems import MODES
from rlm_graph.evaluation.tasks import TASK_NAMES, Fact, Task, build_task

__all__ = [
    "DEFAULT_LENGTHS",
    "MODES",
    "TASK_NAMES",
    "EvaluationCancelled",
    "Fact",
    "Task",
    "aevaluate",
    "build_task",
    "evaluate",
    "score_answer",
]
