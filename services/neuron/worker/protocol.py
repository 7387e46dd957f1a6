"""Messages between the supervisor and a model worker: length-prefixed msgpack frames.

Each frame is a 4-byte big-endian length and a msgspec-encoded message from the tagged
unions below. The worker reads from its stdin and writes to its original stdout (its
``sys.stdout`` is pointed at stderr, so a stray print cannot corrupt the stream).

Requests travel as the client's raw JSON body: the worker validates, renders the chat
template, tokenises and checks the context itself, answering ``Accepted`` or
``Rejected`` at once (its reader thread does this while the engine thread generates),
so errors come back before the HTTP response starts and the supervisor never needs the
tokenizer or torch.

Every ``rid`` field is the supervisor's job id (``requests.new_job_id``), unique for the
daemon's life; a client's ``x-request-id`` never keys a frame.
"""

from __future__ import annotations

import struct
from typing import Literal

import msgspec

from cortex.services.neuron.pipeline.events import InferenceEvent

HEADER = struct.Struct(">I")
MAX_FRAME = 256 * 1024 * 1024


# --------------------------------------------------------------- supervisor -> worker


class Load(msgspec.Struct, tag="load"):
    model_id: str
    path: str
    backend: str
    devices: list[str]
    max_seq_len: int | None = None
    cache_type: str = "fp16"
    max_concurrency: int = 1
    cpu_threads: int = 0
    batching: str = "continuous"
    prefix_cache_bytes: int = 0


class Generate(msgspec.Struct, tag="generate"):
    rid: str
    endpoint: Literal["chat", "completions"]
    body: bytes  # the client's JSON request
    # Lower max_tokens to what fits the context instead of refusing the request.
    clamp_max_tokens: bool = False


class Cancel(msgspec.Struct, tag="cancel"):
    rid: str


class Tokenize(msgspec.Struct, tag="tokenize"):
    rid: str
    body: bytes  # a cortex.common.neuron.TokenizeRequest as JSON


class Shutdown(msgspec.Struct, tag="shutdown"):
    pass


ToWorker = Load | Generate | Cancel | Tokenize | Shutdown


# --------------------------------------------------------------- worker -> supervisor


class Ready(msgspec.Struct, tag="ready"):
    pid: int
    imported: list[str] = []


class Progress(msgspec.Struct, tag="progress"):
    done: int
    total: int
    stage: str = "loading"


class Loaded(msgspec.Struct, tag="loaded"):
    max_concurrency: int
    max_seq_len: int
    vocab_size: int
    devices: list[str]
    cache_type: str | None = None
    memory: dict[str, int] = {}
    notes: list[str] = []
    batching: str | None = None
    prefix_cache_bytes: int = 0


class LoadFailed(msgspec.Struct, tag="load_failed"):
    message: str
    status: int = 500  # 400 when the request could never work here


class Accepted(msgspec.Struct, tag="accepted"):
    rid: str
    prompt_tokens: int
    max_tokens: int
    clamped: bool = False  # max_tokens was lowered to fit (clamp_max_tokens)


class Rejected(msgspec.Struct, tag="rejected"):
    rid: str
    status: int
    message: str
    code: str | None = None
    param: str | None = None


class Started(msgspec.Struct, tag="started"):
    rid: str


class Output(msgspec.Struct, tag="output"):
    """Tokens the engine produced for one request and the events they decoded to."""

    rid: str
    tokens: int
    events: list[InferenceEvent] = []


class Done(msgspec.Struct, tag="done"):
    rid: str
    reason: str  # stop | length | tool_calls | cancelled | error
    prompt_tokens: int = 0
    completion_tokens: int = 0
    stop_sequence: str | None = None
    error: str | None = None
    cached_tokens: int = 0  # of prompt_tokens, reused from the engine's prefix cache
    engine: dict[str, int] = {}  # the engine's counters after this request (forwards, cache)


class Tokenized(msgspec.Struct, tag="tokenized"):
    rid: str
    count: int
    max_seq_len: int | None = None
    ids: list[int] | None = None


FromWorker = (
    Ready
    | Progress
    | Loaded
    | LoadFailed
    | Accepted
    | Rejected
    | Started
    | Output
    | Done
    | Tokenized
)

_to_worker_decoder = msgspec.msgpack.Decoder(ToWorker)
_from_worker_decoder = msgspec.msgpack.Decoder(FromWorker)
_encoder = msgspec.msgpack.Encoder()


def encode_frame(message: msgspec.Struct) -> bytes:
    payload = _encoder.encode(message)
    return HEADER.pack(len(payload)) + payload


def decode_to_worker(payload: bytes) -> ToWorker:
    return _to_worker_decoder.decode(payload)


def decode_from_worker(payload: bytes) -> FromWorker:
    return _from_worker_decoder.decode(payload)


def frame_length(header: bytes) -> int:
    (length,) = HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is larger than {MAX_FRAME}")
    return length
