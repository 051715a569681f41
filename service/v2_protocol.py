"""The Open Inference Protocol (v2: KServe, NVIDIA Triton, MLServer, Seldon) on the scoring core: tensors
in, tensors out. Nothing here knows HTTP; ``service/routes/v2.py`` reads the request, calls these
functions and sends what they return.

Each model takes one of two inputs and gives two outputs::

    text    BYTES        [n]           raw UTF-8 reviews, tokenized here exactly as /predict tokenizes them
    tokens  INT32/INT64  [n, max_len]  reviews a client tokenized itself (ids below the model's id count)
        ─▶ the scoring core's limits ─▶ the model's batcher, the one /predict uses ─▶
    score   FP32         [n]           probability that the review is positive (/predict's score)
    label   BYTES        [n]           "positive" when score >= 0.5, else "negative"

Tensor data travels as JSON (``"data": [...]``, row-major, flat or nested) or, with the binary tensor data
extension, as raw little-endian bytes after the JSON header (``split_body``): an input says how many with
``parameters.binary_data_size``, an output is sent so when its ``parameters.binary_data`` (or the request's
``parameters.binary_data_output``) is true. BYTES elements are a 4-byte little-endian length and the bytes.

Every error is a ``V2Error``: 400 for a request to fix, 404 for an unknown model or version; the core's own
errors (``InvalidInput``, ``ModelUnavailable``) keep their meaning and the route renders them the same way.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, StrictBool, StrictFloat, StrictInt, StrictStr
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import to_json

from service.repository import LoadedModel
from service.schemas import NEGATIVE_EXAMPLE, POSITIVE_EXAMPLE
from service.scoring import POSITIVE_THRESHOLD, ScoringCore, is_blank

PLATFORM = "onnxruntime"
EXTENSIONS = ["binary_tensor_data"]
TEXT, TOKENS = "text", "tokens"
SCORE, LABEL = "score", "label"
TOKEN_DATATYPES = {"INT32": np.dtype("<i4"), "INT64": np.dtype("<i8")}
Datatype = Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "FP32",
                   "FP64", "BYTES", "BF16"]
BINARY_DATA_SIZE = "binary_data_size"  # an input's bytes in the binary part, an output's in the response's
BINARY_DATA = "binary_data"  # a requested output's parameter: send it as binary
BINARY_DATA_OUTPUT = "binary_data_output"  # the request's parameter: every output without a say of its own
LABELS = {False: b"negative", True: b"positive"}


class V2Error(Exception):
    """A request the protocol cannot answer: 400 (something to fix) or 404 (no such model or version)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


# ---- the protocol's messages; also the OpenAPI documentation

Parameter = StrictStr | StrictBool | StrictInt | StrictFloat
Parameters = dict[str, Parameter]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MetadataTensor(_Message):
    name: str = Field(examples=["text"])
    datatype: Datatype = Field(examples=["BYTES"])
    shape: list[int] = Field(description="-1 for a dimension of any size.", examples=[[-1]])


class ServerMetadataResponse(_Message):
    name: str = Field(examples=["imdb-sentiment-service"])
    version: str = Field(examples=["1.0.0"])
    extensions: list[str] = Field(description="Protocol extensions the server supports.",
                                  examples=[EXTENSIONS])


class ModelMetadataResponse(_Message):
    name: str = Field(examples=["conv1d"])
    versions: list[str] = Field(description="The model's one version: the first 12 hex digits of its ONNX file's "
                                            "sha256, as /models and /predict name it.", examples=[["12c4f6f20fea"]])
    platform: str = Field(examples=[PLATFORM])
    inputs: list[MetadataTensor] = Field(description="Send one of them: `text` (raw reviews) or `tokens` (reviews "
                                                     "tokenized by the client; INT32 or INT64).")
    outputs: list[MetadataTensor]


class ServerLiveResponse(_Message):
    live: bool


class ServerReadyResponse(_Message):
    ready: bool


class ModelReadyResponse(_Message):
    name: str
    ready: bool


class RequestInput(_Message):
    name: StrictStr = Field(description="`text` or `tokens`.", examples=[TEXT])
    shape: list[NonNegativeInt] = Field(description="`[n]` for `text`, `[n, max_len]` for `tokens`.",
                                        examples=[[2]])
    datatype: Datatype = Field(description="`BYTES` for `text`, `INT32` or `INT64` for `tokens`.",
                               examples=["BYTES"])
    parameters: Parameters | None = Field(
        None, description=f"`{BINARY_DATA_SIZE}`: the input's bytes in the binary part of the body (binary tensor "
                          "data extension) instead of `data`.")
    data: list[Any] | None = Field(None, description="The elements in row-major order, flat or nested: strings for "
                                                     "BYTES, integers for INT32 and INT64.")


class RequestOutput(_Message):
    name: StrictStr = Field(description="`score` or `label`.", examples=[SCORE])
    parameters: Parameters | None = Field(None, description=f"`{BINARY_DATA}`: true to get it as binary data.")


class InferRequest(_Message):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id": "42", "inputs": [{"name": TEXT, "shape": [2], "datatype": "BYTES",
                                "data": [POSITIVE_EXAMPLE, NEGATIVE_EXAMPLE]}],
        "outputs": [{"name": SCORE}, {"name": LABEL}]}]})

    id: StrictStr | None = Field(None, description="Echoed in the response.")
    parameters: Parameters | None = Field(
        None, description=f"`{BINARY_DATA_OUTPUT}`: true for every output as binary data (unless the output says "
                          "otherwise); others are ignored.")
    inputs: list[RequestInput] = Field(description="One input: `text` or `tokens`.")
    outputs: list[RequestOutput] | None = Field(None, description="The outputs wanted, in the order wanted; "
                                                                  "default: `score` and `label`.")


class ResponseOutput(_Message):
    name: str
    datatype: Datatype
    shape: list[int]
    parameters: dict[str, Any] | None = Field(
        None, description=f"`{BINARY_DATA_SIZE}` when the data is in the binary part of the body.")
    data: list[float | str] | None = None


class InferResponse(_Message):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "model_name": "conv1d", "model_version": "12c4f6f20fea", "id": "42", "outputs": [
            {"name": SCORE, "datatype": "FP32", "shape": [2], "data": [0.97, 0.04]},
            {"name": LABEL, "datatype": "BYTES", "shape": [2], "data": ["positive", "negative"]}]}]})

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class V2ErrorResponse(_Message):
    """The protocol's one error shape."""

    error: str = Field(examples=["unknown model 'bert'; served: bigram_bag, conv1d, conv1d_tuned, conv_lstm, "
                                 "conv_lstm_tuned, robust_bag"])


# ---- models and metadata


def find_model(core: ScoringCore, name: str, version: str | None = None) -> LoadedModel:
    """The served model ``name`` (of ``version``, when a version is named); a 404 V2Error otherwise."""
    model = core.repository.models.get(name)
    if model is None:
        raise V2Error(f"unknown model {name!r}; served: {', '.join(core.repository.names)}", 404)
    if version is not None and version != model.version:
        raise V2Error(f"model {name!r} has no version {version!r}; its version is {model.version} (the first 12 hex "
                      "digits of its ONNX file's sha256), or leave the version out", 404)
    return model


def server_metadata(name: str, version: str) -> ServerMetadataResponse:
    return ServerMetadataResponse(name=name, version=version, extensions=EXTENSIONS)


def model_metadata(model: LoadedModel) -> ModelMetadataResponse:
    return ModelMetadataResponse(
        name=model.name, versions=[model.version], platform=PLATFORM,
        inputs=[MetadataTensor(name=TEXT, datatype="BYTES", shape=[-1]),
                MetadataTensor(name=TOKENS, datatype="INT32", shape=[-1, model.tokenizer.max_len])],
        outputs=[MetadataTensor(name=SCORE, datatype="FP32", shape=[-1]),
                 MetadataTensor(name=LABEL, datatype="BYTES", shape=[-1])])


# ---- requests


@dataclass(frozen=True, slots=True)
class Decoded:
    """One inference request, checked against the protocol: the reviews (text or tokens) and the outputs."""

    id: str | None
    texts: list[str] | None  # the ``text`` input
    tokens: np.ndarray | None  # the ``tokens`` input, (n, max_len), as sent (int32 or int64)
    outputs: list[tuple[str, bool]]  # (output name, as binary data), in the order asked

    @property
    def count(self) -> int:
        return len(self.texts) if self.texts is not None else len(self.tokens)


def split_body(body: bytes, header_length: int | None) -> tuple[bytes, memoryview]:
    """The JSON header and the binary part of a request body (binary tensor data extension: the header's
    length in bytes is ``header_length``, the Inference-Header-Content-Length header; None: all JSON)."""
    if header_length is None:
        return body, memoryview(b"")
    if header_length > len(body):
        raise V2Error(f"Inference-Header-Content-Length is {header_length} but the body has only {len(body)} bytes")
    return body[:header_length], memoryview(body)[header_length:]


def decode_request(header: bytes, binary: memoryview, model: LoadedModel) -> Decoded:
    """The request in ``header`` (JSON) and ``binary`` (the inputs' binary data, in the order of the inputs)."""
    try:
        request = InferRequest.model_validate_json(header)
    except PydanticValidationError as error:
        raise V2Error(f"invalid inference request: {_describe(error)}") from None
    if len(request.inputs) != 1:
        raise V2Error(f"send one input, {TEXT!r} (BYTES [n], raw reviews) or {TOKENS!r} (INT32 or INT64 "
                      f"[n, {model.tokenizer.max_len}]); got {len(request.inputs)}")
    (tensor,) = request.inputs
    raw = _binary_parts(request.inputs, binary)[0]
    if tensor.name == TEXT:
        texts, tokens = _texts(tensor, raw), None
    elif tensor.name == TOKENS:
        texts, tokens = None, _tokens(tensor, raw, model)
    else:
        raise V2Error(f"unknown input {tensor.name!r}; model {model.name} takes {TEXT!r} (BYTES [n]) or "
                      f"{TOKENS!r} (INT32 or INT64 [n, {model.tokenizer.max_len}])")
    return Decoded(request.id, texts, tokens, _outputs(request))


def _describe(error: PydanticValidationError) -> str:
    """pydantic's errors in one line, without the input (it can be megabytes of reviews)."""
    return "; ".join(f"{'.'.join(map(str, item['loc'])) or 'body'}: {item['msg']}"
                     for item in error.errors(include_url=False, include_input=False))


def _binary_parts(inputs: Sequence[RequestInput], binary: memoryview) -> list[memoryview | None]:
    """Each input's slice of the binary part (None for an input with JSON data)."""
    parts, offset = [], 0
    for tensor in inputs:
        size = (tensor.parameters or {}).get(BINARY_DATA_SIZE)
        if size is None:
            parts.append(None)
            continue
        if type(size) is not int or size < 0:
            raise V2Error(f"input {tensor.name!r}: {BINARY_DATA_SIZE} must be a non-negative integer")
        if tensor.data is not None:
            raise V2Error(f"input {tensor.name!r} has both data and {BINARY_DATA_SIZE}; send one of them")
        if offset + size > len(binary):
            raise V2Error(f"input {tensor.name!r}: {BINARY_DATA_SIZE} is {size} but only {len(binary) - offset} "
                          "bytes of binary data follow the JSON header (Inference-Header-Content-Length)")
        parts.append(binary[offset:offset + size])
        offset += size
    if offset != len(binary):
        raise V2Error(f"{len(binary) - offset} bytes of binary data after the JSON header belong to no input "
                      f"(the inputs' {BINARY_DATA_SIZE} add up to {offset})")
    return parts


def _count(tensor: RequestInput, dimensions: int, expected: str) -> int:
    if len(tensor.shape) != dimensions:
        raise V2Error(f"input {tensor.name!r} has shape {tensor.shape}; expected {expected}")
    if tensor.shape[0] == 0:
        raise V2Error(f"input {tensor.name!r} is an empty batch (shape {tensor.shape}); send at least one review")
    return tensor.shape[0]


def _texts(tensor: RequestInput, raw: memoryview | None) -> list[str]:
    if tensor.datatype != "BYTES":
        raise V2Error(f"input {TEXT!r} must be BYTES (UTF-8 reviews), not {tensor.datatype}")
    count = _count(tensor, 1, "[n], one review per element")
    if raw is not None:
        texts = []
        for position, element in enumerate(_bytes_elements(raw, count)):
            try:
                texts.append(str(element, "utf-8"))
            except UnicodeDecodeError as error:
                raise V2Error(f"review {position} is not valid UTF-8 ({error.reason} at byte {error.start})") from None
    else:
        texts = _data(tensor, count)
        if not all(type(text) is str for text in texts):
            raise V2Error(f"input {TEXT!r}: every element of data must be a string")
    blank = [position for position, text in enumerate(texts) if is_blank(text)]
    if blank:
        raise V2Error(f"reviews must contain text; reviews at positions {blank} are empty or whitespace only")
    return texts


def _bytes_elements(raw: memoryview, count: int) -> list[bytes]:
    """The elements of a binary BYTES tensor: each a 4-byte little-endian length, then that many bytes."""
    elements, offset, size = [], 0, len(raw)
    while offset < size:
        if offset + 4 > size or len(elements) == count:
            break
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > size:
            offset = size + 1
            break
        elements.append(bytes(raw[offset:offset + length]))
        offset += length
    if offset != size or len(elements) != count:
        raise V2Error(f"the binary data of input {TEXT!r} is not {count} BYTES elements (each a 4-byte little-endian "
                      "length, then that many bytes)")
    return elements


def _tokens(tensor: RequestInput, raw: memoryview | None, model: LoadedModel) -> np.ndarray:
    max_len = model.tokenizer.max_len
    dtype = TOKEN_DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise V2Error(f"input {TOKENS!r} must be INT32 or INT64, not {tensor.datatype}")
    count = _count(tensor, 2, f"[n, {max_len}]: n reviews of {max_len} token ids each")
    if tensor.shape[1] != max_len:
        raise V2Error(f"input {TOKENS!r} has shape {tensor.shape}; model {model.name} reads {max_len} token ids per "
                      f"review: [n, {max_len}]")
    if raw is not None:
        if len(raw) != count * max_len * dtype.itemsize:
            raise V2Error(f"input {TOKENS!r} has {len(raw)} bytes of binary data; shape {tensor.shape} of "
                          f"{tensor.datatype} takes {count * max_len * dtype.itemsize}")
        return np.frombuffer(raw, dtype=dtype).reshape(count, max_len)
    values = _data(tensor, count * max_len)
    try:
        tokens = np.asarray(values)
    except (OverflowError, ValueError):
        tokens = np.asarray([], dtype=object)
    if tokens.dtype.kind not in "iu" or any(value is True or value is False for value in values):
        raise V2Error(f"input {TOKENS!r}: every element of data must be an integer (a token id)")
    return tokens.reshape(count, max_len)


def _data(tensor: RequestInput, count: int) -> list:
    """The input's JSON data, flattened, with ``count`` elements (its shape's product)."""
    if tensor.data is None:
        raise V2Error(f"input {tensor.name!r} has no data: send data, or binary data with {BINARY_DATA_SIZE}")
    data = tensor.data
    if any(type(element) is list for element in data):
        data = _flatten(data)
    if len(data) != count:
        raise V2Error(f"input {tensor.name!r} has {len(data)} elements of data; shape {tensor.shape} takes {count}")
    return data


def _flatten(data: list) -> list:
    flat, stack = [], [iter(data)]
    while stack:
        for element in stack[-1]:
            if type(element) is list:
                stack.append(iter(element))
                break
            flat.append(element)
        else:
            stack.pop()
    return flat


def _outputs(request: InferRequest) -> list[tuple[str, bool]]:
    default = (request.parameters or {}).get(BINARY_DATA_OUTPUT, False)
    if type(default) is not bool:
        raise V2Error(f"parameter {BINARY_DATA_OUTPUT} must be true or false")
    if request.outputs is None:
        return [(SCORE, default), (LABEL, default)]
    outputs = []
    for output in request.outputs:
        parameters = output.parameters or {}
        if output.name not in (SCORE, LABEL):
            raise V2Error(f"unknown output {output.name!r}; the outputs are {SCORE!r} (FP32) and {LABEL!r} (BYTES)")
        if any(name == output.name for name, _ in outputs):
            raise V2Error(f"output {output.name!r} is requested twice")
        if parameters.get("classification"):
            raise V2Error("the classification extension is not supported; request the score and label outputs")
        binary = parameters.get(BINARY_DATA, default)
        if type(binary) is not bool:
            raise V2Error(f"output {output.name!r}: {BINARY_DATA} must be true or false")
        outputs.append((output.name, binary))
    return outputs


# ---- scoring and responses


async def score(core: ScoringCore, model: LoadedModel, request: Decoded) -> np.ndarray:
    """The scores of the request's reviews, float32, through the core's limits and the model's batcher."""
    if request.texts is not None:
        core.check(request.texts)
        (result,) = (await core.score_with([model], request.texts)).results
    else:
        result = await core.score_tokens(model, core.check_tokens(model, request.tokens))
    return np.asarray(result.scores, dtype=np.float32)


def encode_response(model: LoadedModel, request: Decoded, scores: np.ndarray) -> tuple[bytes, int | None]:
    """The response body, and the length of its JSON header when binary data follows it (else None)."""
    count = len(scores)
    positive = scores >= POSITIVE_THRESHOLD
    outputs, binary = [], []
    for name, as_binary in request.outputs:
        output = {"name": name, "datatype": "FP32" if name == SCORE else "BYTES", "shape": [count]}
        if not as_binary:
            output["data"] = scores.tolist() if name == SCORE else [LABELS[p].decode() for p in positive.tolist()]
        else:
            data = (scores.astype("<f4").tobytes() if name == SCORE
                    else b"".join(struct.pack("<I", len(LABELS[p])) + LABELS[p] for p in positive.tolist()))
            output["parameters"] = {BINARY_DATA_SIZE: len(data)}
            binary.append(data)
        outputs.append(output)
    response = {"model_name": model.name, "model_version": model.version}
    if request.id is not None:
        response["id"] = request.id
    response["outputs"] = outputs
    header = to_json(response)
    if not binary:
        return header, None
    return b"".join([header, *binary]), len(header)
