"""The pipeline's grammar constraint as an exllamav2 filter (forced tool calls, JSON).

Imported only by the exllamav2 engine, inside its worker, after exllamav2 itself.
``next()`` answers exllamav2's question "which tokens may come next, and which of them
end the filter": the one forced token when the grammar allows a single continuation,
else every legal token (plus EOS once the output is complete).

Both run inside ``ExLlamaV2DynamicGenerator.iterate()``, for every job of the batch at
once: an exception there, or an empty set (exllamav2 asserts "Filter excluded all
tokens"), would end every co-batched request. So a dead end (no legal token, or a token
the grammar refuses) is kept in ``error`` and the filter offers a single EOS token
(taken without sampling, whatever its logit), which ends this job alone; the engine
reports it as that request's error.
"""

from __future__ import annotations

from typing import Any

from cortex.services.neuron.pipeline.constrain import ConstraintError

NO_CONTINUATION = "no token of this model can continue the constrained output"


def constraint_filter(model: Any, tokenizer: Any, constraint: Any, eos_ids) -> Any:
    from exllamav2.generator.filters import ExLlamaV2Filter

    class CortexConstraintFilter(ExLlamaV2Filter):
        def __init__(self) -> None:
            super().__init__(model, tokenizer)
            self.constraint = constraint
            self.eos_ids = set(eos_ids)
            self.end = {next(iter(eos_ids))}  # what a finished or dead-ended filter offers
            self.error: str | None = None

        def clone(self, c=None):
            return self  # one job, one constraint: nothing to copy

        def begin(self, prefix_str: str) -> None:
            pass

        def feed(self, token: Any) -> None:
            if self.error is not None:
                return
            token_id = int(token.view(-1)[0]) if hasattr(token, "view") else int(token)
            try:
                self.constraint.advance(token_id)
            except ConstraintError as exc:
                self.error = exc.message

        def next(self):
            if self.constraint.done:  # EOS was taken: nothing follows, and no error
                return self.end, self.end
            if self.error is None:
                forced = self.constraint.forced()
                allowed = {forced} if forced is not None else set(self.constraint.allowed_ids())
                if allowed:
                    return allowed, allowed & self.eos_ids
                self.error = NO_CONTINUATION
            return self.end, self.end

    return CortexConstraintFilter()
