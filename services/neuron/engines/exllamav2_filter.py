"""The pipeline's grammar constraint as an exllamav2 filter (forced tool calls, JSON).

Imported only by the exllamav2 engine, inside its worker, after exllamav2 itself.
``next()`` answers exllamav2's question "which tokens may come next, and which of them
end the filter": the one forced token when the grammar allows a single continuation,
else every legal token (plus EOS once the output is complete).
"""

from __future__ import annotations

from typing import Any


def constraint_filter(model: Any, tokenizer: Any, constraint: Any, eos_ids) -> Any:
    from exllamav2.generator.filters import ExLlamaV2Filter

    class CortexConstraintFilter(ExLlamaV2Filter):
        def __init__(self) -> None:
            super().__init__(model, tokenizer)
            self.constraint = constraint
            self.eos_ids = set(eos_ids)

        def clone(self, c=None):
            return self  # one job, one constraint: nothing to copy

        def begin(self, prefix_str: str) -> None:
            pass

        def feed(self, token: Any) -> None:
            token_id = int(token.view(-1)[0]) if hasattr(token, "view") else int(token)
            self.constraint.advance(token_id)

        def next(self):
            forced = self.constraint.forced()
            allowed = {forced} if forced is not None else set(self.constraint.allowed_ids())
            return allowed, allowed & self.eos_ids

    return CortexConstraintFilter()
