"""SamplingParams mapping/validation and the torch Sampler."""

from __future__ import annotations

import math

import pytest
import torch

from cortex.common.errors import CortexError
from cortex.common.openai import ChatCompletionRequest, CompletionRequest
from cortex.services.neuron.pipeline.sampling import Sampler, SamplingParams

USER = [{"role": "user", "content": "hi"}]


def chat(**fields) -> ChatCompletionRequest:
    import msgspec

    return msgspec.convert({"model": "m", "messages": USER, **fields}, ChatCompletionRequest)


def completion(**fields) -> CompletionRequest:
    import msgspec

    return msgspec.convert({"model": "m", "prompt": "x", **fields}, CompletionRequest)


# ---------------------------------------------------------------------- mapping


def test_openai_defaults_not_the_engines():
    params = SamplingParams.from_chat(chat())
    assert (params.temperature, params.top_p, params.top_k, params.min_p) == (1.0, 1.0, 0, 0.0)
    assert (params.presence_penalty, params.frequency_penalty) == (0.0, 0.0)
    assert params.repetition_penalty == 1.0
    assert params.seed is None and params.max_tokens is None and params.stop == []
    assert not params.greedy


def test_every_field_is_mapped():
    params = SamplingParams.from_chat(
        chat(
            temperature=0.5,
            top_p=0.9,
            top_k=40,
            min_p=0.05,
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            repetition_penalty=1.1,
            max_tokens=10,
            max_completion_tokens=20,
            stop=["a", "", "b"],
            logit_bias={"5": -100, "9": 2.5},
        )
    )
    assert params == SamplingParams(
        temperature=0.5,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        repetition_penalty=1.1,
        max_tokens=20,  # max_completion_tokens wins
        stop=["a", "b"],
        logit_bias={5: -100.0, 9: 2.5},
    )
    assert SamplingParams.from_completion(completion(stop="END", max_tokens=3)).stop == ["END"]


def test_temperature_zero_is_greedy():
    assert SamplingParams.from_chat(chat(temperature=0)).greedy
    assert SamplingParams.from_chat(chat(top_k=1)).greedy
    assert SamplingParams.from_chat(chat(top_k=-1)).top_k == 0  # vLLM's "off"


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"temperature": -0.1}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"min_p": 1.5}, "min_p"),
        ({"top_k": -2}, "top_k"),
        ({"presence_penalty": 2.5}, "presence_penalty"),
        ({"frequency_penalty": -3}, "frequency_penalty"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"n": 2}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_completion_tokens": 0}, "max_completion_tokens"),
        ({"logit_bias": {"x": 1}}, "logit_bias"),
        ({"logit_bias": {"3": 101}}, "logit_bias"),
        ({"stop": [str(i) for i in range(17)]}, "stop"),
        ({"logprobs": True}, "logprobs"),
    ],
)
def test_out_of_range_values_are_a_400_naming_the_field(fields, param):
    with pytest.raises(CortexError) as caught:
        SamplingParams.from_chat(chat(**fields))
    assert caught.value.status == 400
    assert caught.value.param == param
    assert f"`{param}`" in caught.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [({"echo": True}, "echo"), ({"best_of": 3}, "best_of"), ({"suffix": "x"}, "suffix")],
)
def test_unsupported_completion_options_are_a_400(fields, param):
    with pytest.raises(CortexError) as caught:
        SamplingParams.from_completion(completion(**fields))
    assert (caught.value.status, caught.value.param) == (400, param)


def test_logit_bias_outside_the_vocabulary_is_a_400():
    params = SamplingParams.from_chat(chat(logit_bias={"900": 1}))
    params.check_vocab(1000)
    with pytest.raises(CortexError) as caught:
        params.check_vocab(818)
    assert caught.value.param == "logit_bias" and "900" in caught.value.message


# ---------------------------------------------------------------------- the sampler


def draws(params: SamplingParams, logits: torch.Tensor, count: int) -> list[int]:
    sampler = Sampler(params, logits.numel())
    return [sampler.sample(logits, []) for _ in range(count)]


def test_greedy_picks_the_argmax():
    logits = torch.randn(818, generator=torch.Generator().manual_seed(0))
    best = int(torch.argmax(logits))
    assert set(draws(SamplingParams(temperature=0.0), logits, 20)) == {best}
    assert set(draws(SamplingParams(top_k=1, temperature=1.5), logits, 20)) == {best}


def test_same_seed_same_tokens_and_another_seed_differs():
    logits = torch.zeros(818)  # uniform: every draw is up to the generator
    first = draws(SamplingParams(seed=1234), logits, 32)
    again = draws(SamplingParams(seed=1234), logits, 32)
    other = draws(SamplingParams(seed=4321), logits, 32)
    assert first == again
    assert first != other


def test_unseeded_samplers_do_not_repeat_each_other():
    logits = torch.zeros(818)
    assert draws(SamplingParams(), logits, 32) != draws(SamplingParams(), logits, 32)


def probabilities(params: SamplingParams, probs: list[float]) -> list[float]:
    sampler = Sampler(params, len(probs))
    scores = sampler.adjust(torch.log(torch.tensor(probs)), [])
    ids, kept = sampler.candidates(scores)
    full = kept if ids is None else torch.zeros_like(scores).scatter(0, ids, kept)
    return [round(p, 6) for p in full.tolist()]


def test_top_k_keeps_the_k_most_likely():
    result = probabilities(SamplingParams(top_k=2), [0.1, 0.4, 0.2, 0.3])
    assert result == [0.0, round(0.4 / 0.7, 6), 0.0, round(0.3 / 0.7, 6)]


def test_top_p_keeps_the_smallest_set_reaching_p():
    result = probabilities(SamplingParams(top_p=0.8), [0.5, 0.3, 0.15, 0.05])
    assert [p > 0 for p in result] == [True, True, False, False]
    result = probabilities(SamplingParams(top_p=0.81), [0.5, 0.3, 0.15, 0.05])
    assert [p > 0 for p in result] == [True, True, True, False]


def test_min_p_cuts_relative_to_the_most_likely():
    result = probabilities(SamplingParams(min_p=0.5), [0.4, 0.25, 0.19, 0.16])
    assert [p > 0 for p in result] == [True, True, False, False]


def test_masks_hold_over_many_draws():
    logits = torch.randn(818, generator=torch.Generator().manual_seed(3))
    top3 = set(torch.topk(logits, 3).indices.tolist())
    assert set(draws(SamplingParams(top_k=3, seed=5), logits, 300)) <= top3


def test_temperature_sharpens_and_flattens():
    base = [0.6, 0.3, 0.1]
    cold = probabilities(SamplingParams(temperature=0.5), base)
    hot = probabilities(SamplingParams(temperature=2.0), base)
    assert cold[0] > base[0] > hot[0]


def test_presence_and_frequency_penalties_as_openai_defines_them():
    sampler = Sampler(SamplingParams(presence_penalty=0.5, frequency_penalty=0.25), 6)
    logits = torch.zeros(6)
    adjusted = sampler.adjust(logits, [1, 1, 1, 4]).tolist()
    # mu[j] - c[j] * frequency - (c[j] > 0) * presence
    assert adjusted == [0.0, -(3 * 0.25 + 0.5), 0.0, 0.0, -(0.25 + 0.5), 0.0]
    # incrementally updated as the output grows
    assert sampler.adjust(logits, [1, 1, 1, 4, 4]).tolist()[4] == -(2 * 0.25 + 0.5)


def test_repetition_penalty_as_hf_defines_it_over_prompt_and_output():
    sampler = Sampler(SamplingParams(repetition_penalty=2.0), 5, prompt_ids=[0])
    logits = torch.tensor([2.0, -2.0, 2.0, -2.0, 2.0])
    adjusted = sampler.adjust(logits, [1, 2]).tolist()
    # positive logits divided, negative multiplied; token 0 from the prompt, 1 and 2 generated
    assert adjusted == [1.0, -4.0, 1.0, -2.0, 2.0]


def test_logit_bias_can_ban_the_argmax():
    logits = torch.tensor([5.0, 4.0, 1.0])
    params = SamplingParams(temperature=0.0, logit_bias={0: -100.0})
    assert draws(params, logits, 3) == [1, 1, 1]
    assert not math.isnan(Sampler(params, 3).adjust(logits, [])[0].item())
