"""Prefix-cache hit rate with conversation affinity vs least-in-flight routing.

    .venv/bin/python tests/benchmarks/bench_affinity.py [--system-chars 16000] [--turns 5]
        [--turn-chars 0] [--conversations 4] [--max-tokens 16]

Four Claude Code-like conversations (a long system prompt plus tools, then turns that
each add the previous answer and a new user message) run interleaved: each round sends
every conversation's next turn at once, in a seeded random order (agents' turns do not
arrive in a fixed order), so routing has a choice to make. The model
(demo-long: demo-tiny's shape with a long context) is loaded on two real CPU neurons
behind a real gateway. The same conversations run twice on fresh neurons (empty
caches): with ``gateway.affinity = true`` and with ``false`` (least in flight only).

Prints per mode: the share of turns 2.. routed to the neuron that served the same
conversation's previous turn (from the gateway's request log), the engines' prefix
cache hits / lookups (from each neuron's ``/status``), and cached / prompt tokens (from
``usage.prompt_tokens_details.cached_tokens``). Neurons without an engine prefix cache
report neither; then only the routing figure is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import re
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

MODEL = "demo-long"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name} a file in the workspace",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "text": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
    for name in ("read", "write", "edit", "grep", "bash")
]


def system_prompt(chars: int) -> str:
    line = "You are a coding agent. Follow the repository's conventions, test what you change. "
    return (line * (chars // len(line) + 1))[:chars]


def tool_output(conversation: int, number: int, chars: int) -> str:
    """A user turn carrying what a tool printed: this conversation's own history."""
    line = f"conversation {conversation} turn {number + 2}: src/module_{number}.py line ok\n"
    return f"Turn {number + 2}, the tool printed:\n" + (line * (chars // len(line) + 1))[:chars]


async def turn(client, messages, max_tokens) -> tuple[str, str, int, int]:
    """(request id, answer, prompt tokens, cached tokens)."""
    body = {"model": MODEL, "messages": messages, "tools": TOOLS, "max_tokens": max_tokens}
    response = await client.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    data = response.json()
    usage = data["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    answer = data["choices"][0]["message"].get("content") or ""
    return response.headers["x-request-id"], answer, usage["prompt_tokens"], cached


def cache_counts(neurons) -> tuple[int, int] | None:
    hits = lookups = 0
    seen = False
    for neuron in neurons:
        for model in neuron.status()["loaded"]:
            cache = model.get("prefix_cache")
            if model["id"] == MODEL and cache:
                seen = True
                hits += cache.get("hits", 0)
                lookups += cache.get("lookups", 0)
    return (hits, lookups) if seen else None


async def conversations(gateway, args) -> dict:
    system = system_prompt(args.system_chars)
    chats = [
        [{"role": "system", "content": system}, {"role": "user", "content": f"Task {i}: fix it"}]
        for i in range(args.conversations)
    ]
    ids: list[list[str]] = [[] for _ in chats]
    shuffle = random.Random(7)
    prompt = cached = 0
    async with httpx.AsyncClient(base_url=gateway.url, timeout=900) as client:
        for number in range(args.turns):
            # Agents' turns do not arrive in a fixed order: a seeded shuffle per round.
            order = list(range(len(chats)))
            shuffle.shuffle(order)
            results = dict(
                zip(
                    order,
                    await asyncio.gather(*(turn(client, chats[i], args.max_tokens) for i in order)),
                    strict=True,
                )
            )
            for i, (rid, answer, p, c) in sorted(results.items()):
                ids[i].append(rid)
                chats[i] += [
                    {"role": "assistant", "content": answer},
                    {"role": "user", "content": tool_output(i, number, args.turn_chars)},
                ]
                if number:
                    prompt += p
                    cached += c
    log = gateway.log_text()
    sticky = moves = 0
    for conversation in ids:
        where = [re.search(rf"request {rid} .*?neuron=(\S+)", log).group(1) for rid in conversation]
        for before, after in itertools.pairwise(where):
            sticky += before == after
            moves += 1
    routes: dict[str, int] = {}
    for rid in itertools.chain.from_iterable(ids):
        route = re.search(rf"request {rid} .*?route=(\S+)", log).group(1)
        routes[route] = routes.get(route, 0) + 1
    return {"sticky": sticky, "turns": moves, "prompt": prompt, "cached": cached, "routes": routes}


def run_mode(args, root: Path, models, affinity: bool) -> dict:
    from support.gateway import start_gateway
    from support.neuron import start_neuron

    mode = "affinity" if affinity else "least_in_flight"
    work = root / mode
    settings = {"max_concurrency": 4, "default_max_seq_len": 32768}
    with (
        start_neuron(models.root, work / "a", settings={"name": "a", **settings}) as a,
        start_neuron(models.root, work / "b", settings={"name": "b", **settings}) as b,
        start_gateway(
            work / "gateway",
            neurons={"a": a.url, "b": b.url},
            config={"gateway": {"affinity": affinity}},
        ) as gateway,
    ):
        gateway.wait_neurons_up()
        for neuron in ("a", "b"):
            loaded = gateway.post(f"/fleet/models/{MODEL}/load", json={"neuron": neuron})
            assert loaded.status_code == 200, loaded.text
        before = cache_counts([a, b])
        figures = asyncio.run(conversations(gateway, args))
        after = cache_counts([a, b])
        if before is not None and after is not None:
            figures["hits"] = after[0] - before[0]
            figures["lookups"] = after[1] - before[1]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system-chars", type=int, default=16000)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--turn-chars", type=int, default=0, help="tool output added a turn")
    parser.add_argument("--conversations", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    from support.models import make_demo_models

    with tempfile.TemporaryDirectory(prefix="cortex-bench-affinity-") as tmp:
        root = Path(tmp)
        models = make_demo_models(root / "models")
        print(
            f"{args.conversations} conversations x {args.turns} turns, interleaved; "
            f"system prompt {args.system_chars} chars + {len(TOOLS)} tools, "
            f"{args.turn_chars} chars of tool output a turn; {MODEL} on 2 neurons"
        )
        for affinity in (True, False):
            f = run_mode(args, root, models, affinity)
            name = "affinity       " if affinity else "least in flight"
            line = f"  {name}  same placement as the previous turn {f['sticky']}/{f['turns']}"
            if "hits" in f:
                rate = f["hits"] / f["lookups"] if f["lookups"] else 0.0
                line += f"; engine cache hits {f['hits']}/{f['lookups']} ({rate:.0%})"
                share = f["cached"] / f["prompt"] if f["prompt"] else 0.0
                line += (
                    f"; turns 2+: cached {f['cached']}/{f['prompt']} prompt tokens ({share:.0%})"
                )
            else:
                line += "; the neurons report no prefix cache (engine without one)"
            print(line, flush=True)
            print(f"    routes: {', '.join(f'{k} {v}' for k, v in sorted(f['routes'].items()))}")


if __name__ == "__main__":
    main()
