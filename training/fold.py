"""Exact rewrites of an exported graph that make it faster and leave its scores as they are (issue #18).

    python -m training.fold [--models NAME ...] [--out models/] [--data ARCHIVE] [--reviews 512] [--from-keras]

``export.to_onnx`` applies them (``rewrite``) to every export, so the pipeline's exports come out rewritten; the
command rewrites exports already made, and calibrated, in place. Each rewrite is applied where its pattern is found
and is a no-op elsewhere: the bag models have none of them, and a rewritten graph has them no more, so rewriting
twice changes nothing. Nothing is retrained: new initializers are computed from the trained ones, in float64, and
stored as float32. The graph's input, its outputs and every node after the model's logit (the calibration,
``training/calibrate.py``) stay exactly as they are. In the order ``rewrite`` applies them:

``native_gru`` (a Keras GRU). tf2onnx 1.17 writes a Keras 3 GRU as a Loop over the time steps whose body is the
GRU cell written out in about 25 nodes: ``conv_lstm_tuned`` took about 3 to 7 ms per review, nearly all of it the
Loop's overhead per step. The Loop becomes ONNX's GRU operator with ``linear_before_reset=1``, which is Keras's
``reset_after=True`` (its default): the reset gate multiplies the recurrent projection after its bias,
h~ = tanh(x W_h + b_xh + r * (h R_h + b_hh)). Keras's kernel (input x 3H) and recurrent kernel (H x 3H) have their
gates in the order z, r, h, as ONNX's W (3H x input) and R (3H x H): they are transposed; the two bias rows
(input, recurrent) are concatenated into B (6H). The Loop must read the sequence at a time counter that starts at
0, steps by 1 and stops at the sequence's length, with weights carried unchanged, and only its stacked states'
last step may be read (the GRU's Y_h takes that Slice's name); its body is checked to compute the GRU step, on
random states and inputs, before it is replaced.

``skip_padding`` (a recurrent layer over a conv stack: ``conv_lstm``, ``conv_lstm_tuned``). Reviews are padded
in front (``artifacts/tokenizer.py``), and a step of the recurrent layer whose receptive field holds only padding
reads the same vector as every other such step, so the state after the first m of them depends on m alone. The
rewrite tabulates those states (m = 0 .. T - 1, computed once with the same operator, sequence_lens 1 .. T - 1),
counts per review the steps that read padding alone (from its first non-padding id, with the stride and receptive
field of the convolutions and pooling in between), starts the layer from the tabulated state and runs it over the
remaining steps only: ONNX's RNNs stop at their sequence_lens, so the sequence is reversed and the layer runs in
the reverse direction, which reads each review's last T - m steps in their own order. On IMDB test reviews about
55 % of ``conv_lstm``'s 161 steps are padding. Only the final state may be read (tf2onnx's Keras LSTM reads the
steps' output Y for its last step: that becomes Y_h), and the initial state must be zero.

``trim_padding`` (a global max pooling over a conv stack: ``conv1d``). When the graph reads the ids only through
embedding -> valid convolutions, Relu, non-overlapping max pooling -> GlobalMaxPool over time, each node the only
reader of the one before, the positions of the pooled sequence that read padding alone all hold the same vector,
and the global max needs it once, not once per position: on IMDB test reviews about half of ``conv1d``'s 500 ids
are padding. The rewrite finds the first id that is not padding in any review of the batch (Cast to bool, a
ReduceMax over the batch, an ArgMax) and cuts the ids in front of the last position that reads padding alone,
through a table of where to start for each count of padding ids (``padding_starts``): a multiple of the pooling's
stride, so every window stays aligned as it was, and one window of padding alone stays, so the max sees its value.
Nothing is cut when a review of the batch has no padding. It goes first of the conv rewrites: the embedding Gather
then reads the cut ids, and the fold below reads them as it would read the whole ones.

``fold_embedding_conv`` (Embedding -> Conv1D: every conv model). tf2onnx writes a model's first layers as

    sanitize(ids) -> Gather(E: V x D) -> Unsqueeze -> Transpose(0, 3, 1, 2) -> Conv(W: F x D x 1 x K)
                  -> [batch, F, 1, L']

Each row of the convolution's input is a row of E picked by a one-hot id, so the convolution is linear in E's rows:
with, for tap k, the table T_k = E · W_k^T (V x F), its output at position t is  sum_k T_k[ids[t + k]] + b. The K
tables are precomputed and the L'·K·D·F multiply-adds per review (14 million for ``conv1d``) become K row
look-ups per position and their sum. The layout kept (``gather_matmul``, the fastest measured, below):

    one table of V·K rows, row id·K + k = T_k[id] (a word's K rows side by side)
    index [batch, K, L'] = ids[t + k]·K + k: a convolution of the ids (Cast to float32) with K one-hot kernels
        times K and a bias of k, Cast to int64 (exact: integers below 2^24)
    Gather -> [batch, K, L', F] -> Reshape [batch, K, L'·F] -> MatMul by a row of K ones -> the sum over the taps

When the convolution goes on into Squeeze -> Add(bias) -> Relu -> Unsqueeze -> MaxPool(P, stride P) (Keras's
Conv1D(activation="relu") -> MaxPooling1D(P), every conv model here), that tail is rewritten with it,
channels-last: the bias goes into T_0's rows; the pooling is a MaxPool over [batch, 1, L', F] with a (P, 1)
window (its floor drops the last L' mod P positions, as before), and Relu comes after it, on P times fewer values
(max and Relu commute: both are non-decreasing); a Transpose from
that NHWC layout gives MaxPool's output its [batch, F, 1, L'/P] back under its own name, and onnxruntime folds it
into the next convolution's input reorder. The tables cost K·F/D times E's size: 9 MB instead of 5 for ``conv1d``,
26 MB for ``conv1d_tuned`` (F = D = 64, 20,000 ids).

The sanitizing in front (tf2onnx's nine nodes for Keras's ``where(ids < 0, ids + V, ids)``) is left out: the
rewritten Gather reads the raw ids, and its own negative indexing reads an id in [-V, -1] (index id·K + k, wrapped
by V·K) as row id + V, where the sanitizing sent it; ids >= V raise as before; only ids below -V, which the
sanitizing left negative for the old Gather to wrap a second time, now raise too. (The tokenizer writes ids in
[0, V) only.)

Layouts measured (``python -m benchmarks.fold_layouts``; README "Folded exports") and the fastest kept
(``DEFAULT_LAYOUT``): one table per tap, each gathered at its slice of the ids, then one Sum (``taps_sum``) or a
chain of Adds (``taps_adds``); one wide table V x (K·F) gathered once per position, then its K diagonal slices
summed (``wide_slices``) or its (t + k, tap k) blocks picked out tap-major by a second Gather and summed by the
MatMul (``wide_matmul``); the one gather above with a ReduceSum over the taps (``gather_reducesum``) or the MatMul
(``gather_matmul``); and, for each, the pooling left channels-first to the graph's own Relu and MaxPool
(``pool_tail=False``). K separate tables cost a cache miss per tap and position where the one table keeps a
word's rows together, and onnxruntime's ReduceSum over the taps' axis is several times slower than the MatMul at
batch 1.

``fuse_conv_bias``. tf2onnx writes the second Conv1D(activation="relu") as Conv -> Squeeze -> Add(bias) -> Relu,
which keeps onnxruntime from fusing the bias and the Relu into its convolution; it becomes Conv(bias) -> Relu ->
Squeeze, which onnxruntime fuses into one node, and a GlobalMaxPool after the Squeeze (``conv1d``) reads the
convolution's output directly, so that it stays in onnxruntime's blocked layout.

``rewrite`` applies them all and checks the result against the original on random token rows (padding of every
length in front), in one batch and one row at a time: FoldError when any output moves by more than ``TOLERANCE``
(a graph the rewrites misread).

The command rewrites the named models (every model in ``--out`` without ``--models``) in place. For each, it
scores ``--reviews`` test reviews (a seeded sample of the IMDB test set, from ``--data`` or the data setting; the
committed sample's test reviews, ``tests/data/imdb_sample.jsonl``, when the dataset is not there) with the current
and the rewritten graph and refuses, with a one-line error and nothing written, when any output (score or logit)
moves by more than ``TOLERANCE``. It also measures, when the model's Keras weights are in ``--out/keras`` and the
dataset is there, the rewritten graph's parity with Keras as the pipeline does (its uncalibrated scores against
Keras's on the first 512 test reviews; refused above ``TOLERANCE`` too). It then writes the graph and, in the
metadata, the checksum, the size, ``parity_max_abs_diff`` (when measured) and the ``export`` record: the rewrites
applied, the checksum of the graph before them and the largest difference measured. A model with nothing to
rewrite is left alone. With ``--from-keras`` it rewrites the export made again from the Keras weights (``--out/keras``)
with the committed calibration, not the committed graph, so that a rewrite added since applies to a model rewritten
already (the rewrites do not match their own output).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

TOLERANCE = 1e-5  # largest difference allowed between a rewritten graph's outputs and the original's
NATIVE_GRU = "native_gru"
SKIP_PADDING = "skip_padding"
TRIM_PADDING = "trim_padding"
FOLD_EMBEDDING_CONV = "fold_embedding_conv"
FUSE_CONV_BIAS = "fuse_conv_bias"
LAYOUTS = ("taps_sum", "taps_adds", "wide_slices", "wide_matmul", "gather_reducesum", "gather_matmul")
DEFAULT_LAYOUT = "gather_matmul"  # the fastest measured (README "Folded exports")
CHECK_ROWS = 16  # random token rows ``rewrite`` checks the new graph on
CHECK_BATCH_SIZES = (256, 1)  # the checks run the rows in batches of these sizes
CHECK_REVIEWS = 512  # test reviews the command compares the current and the rewritten graph on
PARITY_REVIEWS = 512  # the pipeline's parity reviews: the first test reviews (training/pipeline.py)
SAMPLE_SEED = 0
REPO_ROOT = Path(__file__).resolve().parent.parent
COMMITTED_SAMPLE = REPO_ROOT / "tests" / "data" / "imdb_sample.jsonl"
INT64_MAX = np.iinfo(np.int64).max


class FoldError(Exception):
    """A rewrite would change what the graph computes."""


# ---------------------------------------------------------------------------------------------------------------
# Graph helpers


class _Graph:
    """Lookups over one graph: producers, consumers, initializers, and fresh names."""

    def __init__(self, model: onnx.ModelProto):
        self.model, self.graph = model, model.graph
        self.opset = next((entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx")), 1)
        self._counter = 0
        self.refresh()

    def refresh(self) -> None:
        graph = self.graph
        self.initializers = {init.name: init for init in graph.initializer}
        self.producer = {name: node for node in graph.node for name in node.output if name}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in _inputs_with_subgraphs(node):
                self.consumers.setdefault(name, []).append(node)
        self.outputs = {output.name for output in graph.output}

    def array(self, name: str) -> np.ndarray | None:
        init = self.initializers.get(name) if name else None
        return None if init is None else numpy_helper.to_array(init)

    def ints(self, name: str) -> list[int] | None:
        values = self.array(name)
        return None if values is None else [int(v) for v in values.reshape(-1)]

    def read(self, name: str) -> bool:
        return bool(name) and (bool(self.consumers.get(name)) or name in self.outputs)

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        """The one node that reads ``name``, when exactly one does and it is not a graph output."""
        readers = self.consumers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None

    def fresh(self, stem: str) -> str:
        taken = {name.split("/")[0] for name in (*self.producer, *self.initializers)}
        while True:
            self._counter += 1
            name = f"{stem}_{self._counter}"
            if name not in taken:
                return name

    def axes(self, node: onnx.NodeProto) -> list[int] | None:
        """The axes of a Squeeze or Unsqueeze node: its second input (a constant) or its attribute."""
        if len(node.input) > 1 and node.input[1]:
            return self.ints(node.input[1])
        value = _attribute(node, "axes", None)
        return None if value is None else [int(v) for v in value]

    def replace(self, removed: list[onnx.NodeProto], added: list[onnx.NodeProto]) -> None:
        """Takes ``removed`` out and puts ``added`` where the first of them was (``_finish`` sorts)."""
        position = min(list(self.graph.node).index(node) for node in removed) if removed else len(self.graph.node)
        for node in removed:
            self.graph.node.remove(node)
        for offset, node in enumerate(added):
            self.graph.node.insert(position + offset, node)
        self.refresh()


class _Builder:
    """New nodes and initializers, all named under one fresh stem."""

    def __init__(self, tool: _Graph, stem: str):
        self.tool, self.stem, self.nodes = tool, tool.fresh(stem), []

    def constant(self, name: str, values) -> str:
        full = f"{self.stem}/{name}"
        if full not in self.tool.initializers:
            init = numpy_helper.from_array(np.asarray(values), full)
            self.tool.graph.initializer.append(init)
            self.tool.initializers[full] = init
        return full

    def node(self, op: str, inputs: list[str], name: str, output: str | None = None, **attributes) -> str:
        output = output or f"{self.stem}/{name}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=f"{self.stem}/{name}", **attributes))
        return output

    def axes_node(self, op: str, data: str, axes: list[int], name: str, output: str | None = None,
                  **attributes) -> str:
        """Squeeze, Unsqueeze or a Reduce over ``axes``: the axes an input or an attribute, as the opset wants."""
        as_input = self.tool.opset >= (13 if op in ("Squeeze", "Unsqueeze", "ReduceSum") else 18)
        if as_input:
            return self.node(op, [data, self.constant(f"axes_{'_'.join(map(str, axes))}", np.array(axes, np.int64))],
                             name, output, **attributes)
        return self.node(op, [data], name, output, axes=axes, **attributes)


def _inputs_with_subgraphs(node: onnx.NodeProto) -> list[str]:
    """A node's inputs and the outer-scope names its subgraphs (a Loop's body) read."""
    names = [name for name in node.input if name]
    for attribute in node.attribute:
        for subgraph in ([attribute.g] if attribute.type == onnx.AttributeProto.GRAPH else list(attribute.graphs)):
            defined = ({i.name for i in subgraph.input} | {i.name for i in subgraph.initializer}
                       | {name for sub in subgraph.node for name in sub.output})
            names += [name for sub in subgraph.node for name in _inputs_with_subgraphs(sub) if name not in defined]
    return names


def _attribute(node: onnx.NodeProto, name: str, default):
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def _valid_window(node: onnx.NodeProto) -> bool:
    """A Conv or MaxPool over the last axis only ([1, K] kernel), without padding or dilation."""
    kernel_shape = list(_attribute(node, "kernel_shape", []))
    return (len(kernel_shape) == 2 and kernel_shape[0] == 1 and not any(_attribute(node, "pads", [0] * 4))
            and list(_attribute(node, "dilations", [1, 1])) == [1, 1]
            and _attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID", "NOTSET", "VALID"))


def _other_input(node: onnx.NodeProto, name: str) -> str | None:
    """The input of a two-input node that is not ``name`` (None when ``name`` is not one of them)."""
    if len(node.input) != 2 or name not in node.input:
        return None
    return node.input[1] if node.input[0] == name else node.input[0]


def _prune(graph: onnx.GraphProto) -> None:
    """Drops the nodes whose outputs nobody reads (graph outputs count as read) and the unread initializers."""
    while True:
        read = {output.name for output in graph.output}
        for node in graph.node:
            read.update(_inputs_with_subgraphs(node))
        dead = [node for node in graph.node if not any(name in read for name in node.output if name)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    for init in [init for init in graph.initializer if init.name not in read]:
        graph.initializer.remove(init)


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Orders the nodes so that each comes after the producers of what it reads, otherwise as they are: each
    time, the first node whose inputs are all there."""
    available = {i.name for i in graph.input} | {init.name for init in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        index = next((i for i, node in enumerate(pending)
                      if all(name in available for name in _inputs_with_subgraphs(node))), None)
        if index is None:
            raise FoldError(f"the rewritten graph has a cycle or a missing input at {pending[0].name!r}")
        node = pending.pop(index)
        ordered.append(node)
        available.update(node.output)
    del graph.node[:]
    graph.node.extend(ordered)


def _static_shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Every tensor's shape that onnx's shape inference finds (None for a dimension it does not know)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
    return shapes


def _finish(tool: _Graph) -> bytes:
    _prune(tool.graph)
    _sort_topologically(tool.graph)
    onnx.checker.check_model(tool.model)
    return tool.model.SerializeToString()


def _input_length(model: onnx.ModelProto) -> int:
    return model.graph.input[0].type.tensor_type.shape.dim[1].dim_value


# ---------------------------------------------------------------------------------------------------------------
# A Keras GRU's Loop -> ONNX's GRU


@dataclass
class _GruLoop:
    loop: onnx.NodeProto
    body: onnx.GraphProto
    sequence: str  # [T, batch, input], time-major, read by the body at its time counter
    time: str  # the body's time counter input
    state: str  # the body's state input
    next_state: str  # the body's output that becomes the state
    initial_state: str | None  # [batch, H]; None: zeros
    kernel: np.ndarray  # input x 3H, gates z, r, h
    recurrent: np.ndarray  # H x 3H
    bias: np.ndarray  # 2 x 3H: input bias, recurrent bias
    last_state: onnx.NodeProto  # the Slice of the stacked states' last step: [1, batch, H]


def _last_step_slice(tool: _Graph, stacked: str) -> onnx.NodeProto | None:
    """The one reader of ``stacked`` when it is a Slice of its last step along axis 0 ([-1:], kept as [1, ...])."""
    readers = tool.consumers.get(stacked, [])
    if len(readers) != 1 or readers[0].op_type != "Slice" or stacked in tool.outputs or len(readers[0].input) < 4:
        return None
    last = readers[0]
    starts, ends, axes = (tool.ints(name) for name in last.input[1:4])
    steps = tool.ints(last.input[4]) if len(last.input) > 4 and last.input[4] else [1]
    if starts != [-1] or ends is None or len(ends) != 1 or ends[0] < 2**31 - 1 or axes != [0] or steps != [1]:
        return None
    return last


def _zero_state(tool: _Graph, name: str) -> bool:
    """Whether a recurrent layer's initial state is absent or a constant zero (tf2onnx's Expand of 0, maybe
    Unsqueezed)."""
    if not name:
        return True
    node = tool.producer.get(name)
    while node is not None and node.op_type in ("Unsqueeze", "Identity"):
        name, node = node.input[0], tool.producer.get(node.input[0])
    if node is None:
        value = tool.array(name)
    elif node.op_type == "Expand":
        value = tool.array(node.input[0])
    elif node.op_type == "ConstantOfShape":
        attribute = _attribute(node, "value", None)
        value = np.zeros(1) if attribute is None else numpy_helper.to_array(attribute)
    else:
        return False
    return value is not None and not value.any()


def _match_gru_loop(tool: _Graph, loop: onnx.NodeProto, shapes: dict) -> _GruLoop | None:
    body = _attribute(loop, "body", None)
    if body is None or any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                           for node in body.node for a in node.attribute):
        return None
    kinds = [node.op_type for node in body.node]
    if kinds.count("Sigmoid") != 2 or kinds.count("Tanh") != 1 or kinds.count("MatMul") != 2:
        return None
    carried = len(loop.input) - 2
    if carried < 1 or len(body.input) != carried + 2 or len(body.output) != carried + 2:
        return None  # one scan output: the stacked states
    outer = {body.input[i + 2].name: loop.input[i + 2] for i in range(carried)}  # body input -> its initial value
    passed = {body.input[i + 2].name: body.output[i + 1].name for i in range(carried)}  # -> its next value
    producer = {name: node for node in body.node for name in node.output}

    def source(name: str) -> str:
        while name in producer and producer[name].op_type == "Identity":
            name = producer[name].input[0]
        return name

    def unchanged_weight(name: str) -> np.ndarray | None:
        """A carried input passed on unchanged whose initial value is a constant."""
        return tool.array(outer[name]) if name in outer and source(passed[name]) == name else None

    body_defined = set(producer) | {i.name for i in body.input} | {i.name for i in body.initializer}
    gathers = [node for node in body.node if node.op_type == "Gather" and node.input[0] not in body_defined
               and node.input[1] in outer and _attribute(node, "axis", 0) == 0]
    if len(gathers) != 1:
        return None
    step = gathers[0]
    sequence, time = step.input
    matmuls = {source(node.input[0]): node for node in body.node if node.op_type == "MatMul"}
    state = next((name for name in matmuls if name != step.output[0]), None)
    if step.output[0] not in matmuls or state not in outer:
        return None
    kernel = unchanged_weight(matmuls[step.output[0]].input[1])
    recurrent = unchanged_weight(matmuls[state].input[1])
    biases = [array for name in outer if name not in (time, state)
              for array in [unchanged_weight(name)] if array is not None and array.ndim == 2 and array.shape[0] == 2]
    if kernel is None or recurrent is None or len(biases) != 1 or recurrent.ndim != 2 or kernel.ndim != 2:
        return None
    bias, units = biases[0], recurrent.shape[0]
    if recurrent.shape != (units, 3 * units) or kernel.shape[1] != 3 * units or bias.shape != (2, 3 * units):
        return None
    # the time counter starts at 0 and steps by 1; the stacked states are the next states
    increment = producer.get(passed[time])
    one = None if increment is None or increment.op_type != "Add" else _other_input(increment, time)
    one_value = None if one is None else next((numpy_helper.to_array(i) for i in body.initializer if i.name == one),
                                              tool.array(one))
    if (tool.ints(outer[time]) != [0] or one_value is None or one_value.size != 1 or int(one_value) != 1
            or source(body.output[carried + 1].name) != source(passed[state])):
        return None
    # the trip count: every step of the sequence (the body's stopping constants are the sequence's length)
    steps = (shapes.get(sequence) or [None])[0]
    limits = [next((numpy_helper.to_array(i) for i in body.initializer if i.name == node.input[1]),
                   tool.array(node.input[1])) for node in body.node if node.op_type == "Less"]
    if (steps is None or not limits or any(value is None or value.size != 1 or float(value) != steps
                                           for value in limits)):
        return None
    if loop.input[0] and (tool.ints(loop.input[0]) is None or tool.ints(loop.input[0])[0] < steps):
        return None
    if any(tool.read(name) for name in loop.output[:carried]):
        return None  # only the stacked states may be read, and only their last step
    last = _last_step_slice(tool, loop.output[carried])
    if last is None:
        return None
    initial = None if _zero_state(tool, outer[state]) else outer[state]
    return _GruLoop(loop, body, sequence, time, state, passed[state], initial, kernel.astype(np.float32),
                    recurrent.astype(np.float32), bias.astype(np.float32), last)


def _gru_step(x: np.ndarray, h: np.ndarray, kernel: np.ndarray, recurrent: np.ndarray, bias: np.ndarray
              ) -> np.ndarray:
    """Keras's GRU step with reset_after=True (gates z, r, h), in float64."""
    def sigmoid(values):
        return 1 / (1 + np.exp(-values))

    units = recurrent.shape[0]
    projected = x @ kernel + bias[0]
    hidden = h @ recurrent + bias[1]
    z = sigmoid(projected[:, :units] + hidden[:, :units])
    r = sigmoid(projected[:, units:2 * units] + hidden[:, units:2 * units])
    candidate = np.tanh(projected[:, 2 * units:] + r * hidden[:, 2 * units:])
    return z * h + (1 - z) * candidate


def _body_is_a_gru_step(tool: _Graph, match: _GruLoop, shapes: dict) -> bool:
    """Runs the Loop's body alone on random states and inputs (at time 3) and compares its next state with Keras's
    GRU step of the matched weights."""
    import onnxruntime as ort

    body = onnx.GraphProto()
    body.CopyFrom(match.body)
    units, features = match.recurrent.shape[0], match.kernel.shape[0]
    steps = shapes[match.sequence][0]
    outer_names = {name for node in body.node for name in _inputs_with_subgraphs(node)} - (
        {i.name for i in body.input} | {i.name for i in body.initializer} | {o for n in body.node for o in n.output})
    for name in outer_names - {match.sequence}:
        if name not in tool.initializers:
            return False
        body.initializer.append(tool.initializers[name])
    body.input.append(helper.make_tensor_value_info(match.sequence, TensorProto.FLOAT, [steps, None, features]))
    body.ClearField("output")
    body.output.append(helper.make_tensor_value_info(match.next_state, TensorProto.FLOAT, None))
    model = helper.make_model(body, opset_imports=[helper.make_opsetid("", tool.opset)])
    model.ir_version = tool.model.ir_version
    rng = np.random.default_rng(0)
    sequence = rng.normal(0, 1, (steps, 3, features)).astype(np.float32)
    state = rng.normal(0, 0.5, (3, units)).astype(np.float32)
    feed = {match.sequence: sequence}
    for index, info in enumerate(match.body.input):
        dtype = helper.tensor_dtype_to_np_dtype(info.type.tensor_type.elem_type)
        if index == 0:
            feed[info.name] = np.array(3, dtype)
        elif index == 1:
            feed[info.name] = np.array(True)
        elif info.name == match.time:
            feed[info.name] = np.array(3, dtype)
        elif info.name == match.state:
            feed[info.name] = state.astype(dtype)
        else:
            value = tool.array(match.loop.input[index])
            if value is None:
                return False
            feed[info.name] = value.astype(dtype)
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        (next_state,) = ort.InferenceSession(model.SerializeToString(), options,
                                             providers=["CPUExecutionProvider"]).run(None, feed)
    except Exception:  # onnxruntime raises several types; a body it cannot run alone is not matched
        return False
    expected = _gru_step(sequence[3].astype(np.float64), state.astype(np.float64), match.kernel.astype(np.float64),
                         match.recurrent.astype(np.float64), match.bias.astype(np.float64))
    return bool(np.max(np.abs(next_state - expected)) <= 1e-5)


def native_gru(onnx_bytes: bytes) -> bytes:
    """The graph with every Keras GRU Loop replaced by ONNX's GRU operator (see the module's docstring); the bytes
    unchanged when there is none."""
    model = onnx.load_from_string(onnx_bytes)
    tool = _Graph(model)
    loops = [node for node in tool.graph.node if node.op_type == "Loop"]
    if not loops:
        return onnx_bytes
    shapes = _static_shapes(model)
    matches = [match for loop in loops for match in [_match_gru_loop(tool, loop, shapes)]
               if match is not None and _body_is_a_gru_step(tool, match, shapes)]
    if not matches:
        return onnx_bytes
    for match in matches:
        build = _Builder(tool, "gru")
        units = match.recurrent.shape[0]
        inputs = [match.sequence, build.constant("W", match.kernel.T[None].copy()),  # 1 x 3H x input, z r h
                  build.constant("R", match.recurrent.T[None].copy()),  # 1 x 3H x H
                  build.constant("B", match.bias.reshape(1, 6 * units).copy()), ""]  # input, then recurrent biases
        if match.initial_state is not None:
            inputs.append(build.axes_node("Unsqueeze", match.initial_state, [0], "initial_h"))
        build.nodes.append(helper.make_node("GRU", inputs, ["", match.last_state.output[0]], name=f"{build.stem}/GRU",
                                            hidden_size=units, linear_before_reset=1, direction="forward"))
        tool.replace([match.loop, match.last_state], build.nodes)
    return _finish(tool)


# ---------------------------------------------------------------------------------------------------------------
# A recurrent layer starts after the padding


@dataclass
class _Receptive:
    """Step s of a sequence reads ids [stride * s, stride * s + field) of ``ids``."""

    ids: str
    stride: int
    field: int
    vocabulary: int  # the embedding table's rows


def _receptive_field(tool: _Graph, sequence: str, shapes: dict, axis: int = 0) -> _Receptive | None:
    """Walks from a sequence whose time axis is ``axis`` (0: time-major [T, batch, features]) back to the Gather of
    an embedding table through position-wise nodes (Transpose, Squeeze, Unsqueeze, Relu, Add of a constant that
    does not vary in time), valid unit-stride convolutions and non-overlapping max pooling along the time axis; None
    on anything else."""
    tensor, stride, field = sequence, 1, 1
    while True:
        node = tool.producer.get(tensor)
        if node is None:
            return None
        rank = len(shapes.get(node.input[0]) or [])
        out_rank = len(shapes.get(node.output[0]) or [])
        if node.op_type == "Transpose":
            axis = list(_attribute(node, "perm", []))[axis]
        elif node.op_type in ("Squeeze", "Unsqueeze"):
            axes = tool.axes(node)
            if axes is None or not rank or not out_rank:
                return None
            if node.op_type == "Squeeze":
                axis = [a for a in range(rank) if a not in {a % rank for a in axes}][axis]
            else:
                inserted = {a % out_rank for a in axes}
                if axis in inserted:
                    return None
                axis -= sum(1 for a in inserted if a < axis)
        elif node.op_type == "Add":
            constants = [tool.array(name) for name in node.input]
            if sum(value is not None for value in constants) != 1 or not out_rank:
                return None
            constant = next(value for value in constants if value is not None)
            position = axis - (out_rank - constant.ndim)
            if 0 <= position < constant.ndim and constant.shape[position] != 1:
                return None
            tensor = next(name for name, value in zip(node.input, constants, strict=True) if value is None)
            continue
        elif node.op_type in ("Conv", "MaxPool"):
            width = list(_attribute(node, "kernel_shape", [0, 0]))[-1]
            strides = list(_attribute(node, "strides", [1, 1]))
            if rank != 4 or axis != 3 or not _valid_window(node):
                return None
            if node.op_type == "Conv" and strides == [1, 1]:
                field += width - 1
            elif (node.op_type == "MaxPool" and strides == [1, width] and not _attribute(node, "ceil_mode", 0)
                  and len([o for o in node.output if o]) == 1):
                stride, field = stride * width, field * width
            else:
                return None
        elif node.op_type == "Gather":
            table = tool.array(node.input[0])
            if (table is None or table.ndim != 2 or _attribute(node, "axis", 0) != 0 or axis != 1
                    or len(shapes.get(node.input[1]) or []) != 2):
                return None
            return _Receptive(node.input[1], stride, field, table.shape[0])
        elif node.op_type != "Relu":
            return None
        tensor = node.input[0]


def _read_final_state(tool: _Graph, rnn: onnx.NodeProto) -> bool:
    """Makes a recurrent layer whose steps' output Y is read only for its last step (a Squeeze of the directions
    axis, then a Slice of the last step: tf2onnx's Keras LSTM) give that step as its final state Y_h instead, the
    same [1, batch, H] under the Slice's name; False when Y is read otherwise."""
    readers = tool.consumers.get(rnn.output[0], []) if rnn.output and rnn.output[0] else []
    if not readers:
        return True
    has_final = len(rnn.output) > 1 and tool.read(rnn.output[1])
    if (len(readers) != 1 or readers[0].op_type != "Squeeze" or tool.axes(readers[0]) not in ([1], [-3])
            or rnn.output[0] in tool.outputs or has_final):
        return False
    squeeze = readers[0]
    last = _last_step_slice(tool, squeeze.output[0])
    if last is None:
        return False
    while len(rnn.output) < 2:
        rnn.output.append("")
    rnn.output[0], rnn.output[1] = "", last.output[0]
    tool.replace([squeeze, last], [])
    return True


def _states_after_padding(tool: _Graph, rnn: onnx.NodeProto, padding_step: np.ndarray, steps: int
                          ) -> list[np.ndarray]:
    """The layer's final states (h, and c for an LSTM) after m steps of ``padding_step`` from a zero state, for
    m = 0 .. steps - 1, each [1, steps, H]: computed by the same operator (sequence_lens 1 .. steps - 1)."""
    import onnxruntime as ort

    lstm = rnn.op_type == "LSTM"
    units = _attribute(rnn, "hidden_size", None)
    weights = {index: name for index, name in enumerate(rnn.input) if index in (1, 2, 3, 7) and name}
    inputs = ["x", "w1", "w2", "w3" if 3 in weights else "", "lengths"] + (["", "", "w7"] if 7 in weights else [])
    outputs_ = ["", "h"] + (["c"] if lstm else [])
    attributes = {a.name: helper.get_attribute_value(a) for a in rnn.attribute}
    graph = helper.make_graph(
        [helper.make_node(rnn.op_type, inputs, outputs_, **attributes)], "states",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("lengths", TensorProto.INT32, None)],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in outputs_ if name],
        [numpy_helper.from_array(tool.array(name), f"w{index}") for index, name in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", tool.opset)])
    model.ir_version = tool.model.ir_version
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rows = steps - 1
    sequence = np.ascontiguousarray(np.broadcast_to(padding_step.astype(np.float32),
                                                    (rows, rows, padding_step.size)))
    results = session.run(None, {"x": sequence, "lengths": np.arange(1, steps, dtype=np.int32)})
    zero = np.zeros((1, 1, units), np.float32)
    return [np.concatenate([zero, state.reshape(1, rows, units)], axis=1) for state in results]


def _padding_step(onnx_bytes: bytes, sequence: str) -> np.ndarray | None:
    """What the sequence reads at every step of a review of padding alone (None if the steps differ)."""
    probe = onnx.load_from_string(onnx_bytes)
    probe.graph.output.append(helper.make_tensor_value_info(sequence, TensorProto.FLOAT, None))
    steps = outputs(probe.SerializeToString(), np.zeros((1, _input_length(probe)), np.int32))[sequence][:, 0, :]
    return steps[0] if np.allclose(steps, steps[0], rtol=0, atol=1e-6) else None


def skip_padding(onnx_bytes: bytes) -> bytes:
    """The graph with every recurrent layer over a conv stack starting after the steps that read padding alone
    (see the module's docstring); the bytes unchanged when there is none."""
    model = onnx.load_from_string(onnx_bytes)
    tool = _Graph(model)
    rnns = [node for node in tool.graph.node if node.op_type in ("LSTM", "GRU")]
    if not rnns:
        return onnx_bytes
    shapes = _static_shapes(model)
    changed = False
    for rnn in rnns:
        lstm = rnn.op_type == "LSTM"
        inputs = list(rnn.input) + [""] * (8 - len(rnn.input))
        if (_attribute(rnn, "direction", b"forward") not in (b"forward", "forward") or _attribute(rnn, "layout", 0)
                or inputs[4] or not _zero_state(tool, inputs[5]) or (lstm and not _zero_state(tool, inputs[6]))):
            continue
        steps = (shapes.get(rnn.input[0]) or [None])[0]
        receptive = _receptive_field(tool, rnn.input[0], shapes)
        if receptive is None or not steps or steps < 2 or not _read_final_state(tool, rnn):
            continue
        if tool.read(rnn.output[0]) or not tool.read(rnn.output[1]) or any(tool.read(o) for o in rnn.output[2:]):
            continue  # only the final hidden state may be read: the steps' outputs would move
        padding = _padding_step(onnx_bytes, rnn.input[0])
        if padding is None:
            continue
        tables = _states_after_padding(tool, rnn, padding, steps)
        build = _Builder(tool, "skip")
        # m, the steps that read padding alone: ceil((first non-padding id - field + 1) / stride), at most T - 1
        # (the raw ids when they are sanitized: a 0 is padding either way; a -V, which the sanitizing maps to 0 too,
        # is then counted as a word, and its steps are computed rather than skipped)
        ids = _gather_ids(tool, receptive.ids, receptive.vocabulary)
        is_padding = build.node("Cast", [build.node("Equal", [ids, build.constant("zero", np.array(0, np.int32))],
                                                    "padding")], "is_padding", to=TensorProto.INT32)
        first = build.node("ArgMin", [is_padding], "first_word", axis=1, keepdims=0)  # int64 [batch]; 0: all padding
        shifted = build.node("Add", [first, build.constant("offset", np.array(receptive.stride - receptive.field,
                                                                             np.int64))], "shifted")
        counted = build.node("Div", [build.node("Max", [shifted, build.constant("none", np.array(0, np.int64))],
                                                "at_least_0"),
                                     build.constant("stride", np.array(receptive.stride, np.int64))], "counted")
        skipped = build.node("Min", [counted, build.constant("last", np.array(steps - 1, np.int64))], "skipped")
        lengths = build.node("Cast", [build.node("Sub", [build.constant("steps", np.array(steps, np.int64)), skipped],
                                                 "left")], "lengths", to=TensorProto.INT32)
        initial_h = build.node("Gather", [build.constant("h_after_padding", tables[0]), skipped], "initial_h", axis=1)
        initial_c = (build.node("Gather", [build.constant("c_after_padding", tables[1]), skipped], "initial_c",
                                axis=1) if lstm else "")
        # reversed in time, a review's steps m .. T - 1 are the first T - m, which a reverse layer with
        # sequence_lens T - m reads from the last to the first: in their own order
        reversed_sequence = build.node("Slice", [rnn.input[0], build.constant("from_end", np.array([-1], np.int64)),
                                                 build.constant("to_start", np.array([-INT64_MAX], np.int64)),
                                                 build.constant("axis_0", np.array([0], np.int64)),
                                                 build.constant("backwards", np.array([-1], np.int64))], "reversed")
        new_inputs = [reversed_sequence, *inputs[1:4], lengths, initial_h] + ([initial_c, inputs[7]] if lstm else [])
        while new_inputs and not new_inputs[-1]:
            new_inputs.pop()
        del rnn.input[:]
        rnn.input.extend(new_inputs)
        for attribute in [a for a in rnn.attribute if a.name == "direction"]:
            rnn.attribute.remove(attribute)
        rnn.attribute.append(helper.make_attribute("direction", "reverse"))
        tool.replace([], build.nodes)
        changed = True
    return _finish(tool) if changed else onnx_bytes


def _a_chain(tool: _Graph, first: onnx.NodeProto, last: onnx.NodeProto) -> bool:
    """Whether each node from ``first`` to ``last`` is the only reader of the one before it: nothing else in the
    graph sees the positions a trim would take away."""
    node = first
    while node is not last:
        node = tool.only_consumer(node.output[0]) if len(node.output) == 1 else None
        if node is None:
            return False
    return True


def padding_starts(length: int, stride: int, field: int) -> np.ndarray:
    """For each count of padding ids in front (0 .. ``length``): where the trimmed sequence starts. Output position
    u of the pooled sequence reads ids [stride * u, stride * u + field), so it reads padding alone when
    stride * u + field <= lead, the last such u being P = floor((lead - field) / stride). The sequence starts at
    stride * P: the positions before P (padding alone) go, position P (padding alone too) stays and gives the
    global max the value they all had; nothing goes when P < 0 (no position reads padding alone)."""
    lead = np.arange(length + 1)
    last_padding_only = np.where(lead >= field, (lead - field) // stride, 0)
    return (stride * last_padding_only).astype(np.int64)


def trim_padding(onnx_bytes: bytes) -> bytes:
    """The graph reading only the end of the ids when a global max pooling over a conv stack is all that reads
    them (see the module's docstring): the padding a whole batch has in front, but for one window's worth, is cut
    off before the embedding. The bytes unchanged when there is no such pooling."""
    model = onnx.load_from_string(onnx_bytes)
    tool = _Graph(model)
    pools = [node for node in tool.graph.node if node.op_type == "GlobalMaxPool"]
    if len(pools) != 1:
        return onnx_bytes
    (pool,) = pools
    shapes = _static_shapes(model)
    rank = len(shapes.get(pool.input[0]) or [])
    if rank < 3:
        return onnx_bytes
    receptive = _receptive_field(tool, pool.input[0], shapes, axis=rank - 1)  # GlobalMaxPool: over the last axis
    if receptive is None:
        return onnx_bytes
    length = (shapes.get(receptive.ids) or [None, None])[1]
    if not length:
        return onnx_bytes
    gathers = [node for node in tool.consumers.get(receptive.ids, []) if node.op_type == "Gather"]
    if len(gathers) != 1 or len(tool.consumers[receptive.ids]) != 1 or not _a_chain(tool, gathers[0], pool):
        return onnx_bytes
    gather, ids = gathers[0], _gather_ids(tool, receptive.ids, receptive.vocabulary)
    build = _Builder(tool, "trim")
    # the first id that is not padding in any review of the batch: 0 when a review has none (or the batch is
    # all padding), and then nothing is cut
    is_word = build.node("Cast", [build.node("Cast", [ids], "is_word", to=TensorProto.BOOL)], "word_flags",
                         to=TensorProto.INT32)
    any_word = build.axes_node("ReduceMax", is_word, [0], "any_word", keepdims=0)  # [L]
    lead = build.node("ArgMax", [any_word], "lead", axis=0, keepdims=1)  # [1], int64
    starts = build.constant("starts", padding_starts(length, receptive.stride, receptive.field))
    start = build.node("Gather", [starts, lead], "start", axis=0)
    trimmed = build.node("Slice", [ids, start, build.constant("end", np.array([INT64_MAX], np.int64)),
                                   build.constant("axis_1", np.array([1], np.int64))], "ids")
    gather.input[1] = trimmed
    tool.replace([], build.nodes)
    return _finish(tool)


# ---------------------------------------------------------------------------------------------------------------
# Embedding -> Conv1D folded


@dataclass
class _EmbeddingConv:
    gather: onnx.NodeProto
    unsqueeze: onnx.NodeProto
    transpose: onnx.NodeProto
    conv: onnx.NodeProto
    ids: str
    embedding: np.ndarray  # V x D
    kernel: np.ndarray  # F x D x 1 x K
    bias: np.ndarray  # F: the Conv's own bias input, or zeros (tf2onnx adds the bias after it)


@dataclass
class _PoolTail:
    """Squeeze -> Add(bias) -> Relu -> Unsqueeze -> MaxPool(P, stride P) after the convolution."""

    nodes: list[onnx.NodeProto]
    bias: np.ndarray  # F
    pool: int
    output: str  # MaxPool's output: [batch, F, 1, pooled]


def _match_embedding_conv(tool: _Graph, conv: onnx.NodeProto) -> _EmbeddingConv | None:
    kernel = tool.array(conv.input[1])
    if (kernel is None or kernel.ndim != 4 or kernel.shape[2] != 1 or kernel.dtype != np.float32
            or _attribute(conv, "group", 1) != 1 or list(_attribute(conv, "strides", [1, 1])) != [1, 1]
            or not _valid_window(conv)):
        return None
    bias = np.zeros(kernel.shape[0], np.float32)
    if len(conv.input) > 2 and conv.input[2]:
        bias = tool.array(conv.input[2])
        if bias is None:
            return None
    transpose = tool.producer.get(conv.input[0])
    if (transpose is None or transpose.op_type != "Transpose" or list(_attribute(transpose, "perm", [])) != [0, 3, 1, 2]
            or tool.only_consumer(transpose.output[0]) is not conv):
        return None
    unsqueeze = tool.producer.get(transpose.input[0])
    if (unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or tool.axes(unsqueeze) not in ([1], [-3])
            or tool.only_consumer(unsqueeze.output[0]) is not transpose):
        return None
    gather = tool.producer.get(unsqueeze.input[0])
    if gather is None or gather.op_type != "Gather" or _attribute(gather, "axis", 0) != 0:
        return None
    embedding = tool.array(gather.input[0])
    if (embedding is None or embedding.ndim != 2 or embedding.dtype != np.float32
            or embedding.shape[1] != kernel.shape[1] or tool.only_consumer(gather.output[0]) is not unsqueeze):
        return None
    return _EmbeddingConv(gather, unsqueeze, transpose, conv, gather.input[1], embedding, kernel, bias)


def _match_pool_tail(tool: _Graph, conv: onnx.NodeProto, filters: int) -> _PoolTail | None:
    squeeze = tool.only_consumer(conv.output[0])
    if squeeze is None or squeeze.op_type != "Squeeze" or tool.axes(squeeze) not in ([2], [-2]):
        return None
    add = tool.only_consumer(squeeze.output[0])
    bias = None if add is None or add.op_type != "Add" else tool.array(_other_input(add, squeeze.output[0]) or "")
    if bias is None or bias.shape != (1, filters, 1) or bias.dtype != np.float32:
        return None
    relu = tool.only_consumer(add.output[0])
    unsqueeze = None if relu is None or relu.op_type != "Relu" else tool.only_consumer(relu.output[0])
    if unsqueeze is None or unsqueeze.op_type != "Unsqueeze" or tool.axes(unsqueeze) not in ([2], [-2]):
        return None
    pool = tool.only_consumer(unsqueeze.output[0])
    if (pool is None or pool.op_type != "MaxPool" or len([o for o in pool.output if o]) != 1 or not _valid_window(pool)
            or _attribute(pool, "ceil_mode", 0) or list(_attribute(pool, "strides", [1, 1]))
            != list(_attribute(pool, "kernel_shape", []))):
        return None
    return _PoolTail([squeeze, add, relu, unsqueeze, pool], bias.reshape(-1), list(_attribute(pool, "kernel_shape",
                                                                                              []))[1], pool.output[0])


def tap_tables(embedding: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """T[k] = E · W_k^T for each tap k: (K, V, F), computed in float64 and rounded once to float32."""
    weights = kernel[:, :, 0, :].astype(np.float64)  # F x D x K
    return np.einsum("vd,fdk->kvf", embedding.astype(np.float64), weights).astype(np.float32)


def fold_embedding_conv(onnx_bytes: bytes, layout: str = DEFAULT_LAYOUT, pool_tail: bool = True) -> bytes:
    """The graph with every Embedding -> Conv1D folded into per-tap tables (see the module's docstring); the bytes
    unchanged when there is none. ``layout`` and ``pool_tail`` choose among the measured layouts."""
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    model = onnx.load_from_string(onnx_bytes)
    tool = _Graph(model)
    matches = [match for node in list(tool.graph.node) if node.op_type == "Conv"
               for match in [_match_embedding_conv(tool, node)] if match is not None]
    if not matches:
        return onnx_bytes
    shapes = _static_shapes(model)
    for match in matches:
        ids_shape = shapes.get(match.ids) or []
        _fold(tool, match, ids_shape[1] if len(ids_shape) == 2 else None, layout, pool_tail)
    return _finish(tool)


def _fold(tool: _Graph, match: _EmbeddingConv, length: int | None, layout: str, pool_tail: bool) -> None:
    filters, _, _, taps = match.kernel.shape
    vocabulary = match.embedding.shape[0]
    tables, bias = tap_tables(match.embedding, match.kernel), match.bias.astype(np.float32)
    tail = _match_pool_tail(tool, match.conv, filters) if pool_tail else None
    if tail is not None:
        bias = bias + tail.bias
    tables[0] += bias  # the bias once, in the first tap's rows
    positions = None if length is None else length - taps + 1  # L', the convolution's output length
    if positions is None and layout in ("wide_slices", "wide_matmul"):
        layout = DEFAULT_LAYOUT  # these two need a static input length
    ids = _gather_ids(tool, match.ids, vocabulary)
    build = _Builder(tool, "fold")
    ones = build.constant("ones", np.ones((1, taps), np.float32)) if layout.endswith("matmul") else ""

    def sum_over_taps(gathered: str) -> str:
        """[batch, K, L', F] summed over the taps: by a MatMul with a row of ones ([1, K] x [batch, K, L' * F]) or
        a ReduceSum."""
        if layout.endswith("reducesum"):
            return build.axes_node("ReduceSum", gathered, [1], "sum", keepdims=0)
        flat = build.node("Reshape", [gathered, build.constant("flat_shape", np.array([0, taps, -1], np.int64))],
                          "flat")
        return build.node("MatMul", [ones, flat], "sum")  # [batch, 1, L' * F]

    if layout in ("taps_sum", "taps_adds"):  # one table per tap, each gathered at its slice of the ids
        summed, gathered = None, []
        for k in range(taps):  # taps_adds: each tap added as soon as it is gathered, fewer tensors alive at once
            end = k - taps + 1 if k < taps - 1 else INT64_MAX  # ids[:, k : L - (K - 1 - k)]
            picked = build.node("Slice", [ids, build.constant(f"start_{k}", np.array([k], np.int64)),
                                          build.constant(f"end_{k}", np.array([end], np.int64)),
                                          build.constant("axis_1", np.array([1], np.int64))], f"ids_tap_{k}")
            gathered.append(build.node("Gather", [build.constant(f"table_{k}", tables[k]), picked], f"tap_{k}",
                                       axis=0))
            if layout == "taps_adds":
                summed = gathered[-1] if summed is None else build.node("Add", [summed, gathered[-1]], f"sum_{k}")
        if layout == "taps_sum":
            summed = build.node("Sum", gathered, "sum")
    elif layout in ("gather_reducesum", "gather_matmul"):
        # one table, row id * K + k = T_k[id] (a word's K rows side by side), gathered once at the index
        # [batch, K, L'] = ids[t + k] * K + k, made by a convolution of the ids (as float32) with K one-hot kernels
        # times K and a bias of k: for every id below 2^24 / K each product and sum is an integer below 2^24, so
        # exact; an id >= V lands at or past row V * K and raises, an id < -V below -V * K and raises
        table = np.ascontiguousarray(tables.transpose(1, 0, 2).reshape(vocabulary * taps, filters))
        kernels = np.zeros((taps, 1, taps), np.float32)
        kernels[np.arange(taps), 0, np.arange(taps)] = taps
        channel = build.axes_node("Unsqueeze", build.node("Cast", [ids], "ids_float", to=TensorProto.FLOAT), [1],
                                  "ids_channel")  # [batch, 1, L]
        windows = build.node("Conv", [channel, build.constant("index_kernels", kernels),
                                      build.constant("index_offsets", np.arange(taps, dtype=np.float32))], "windows")
        rows = build.node("Cast", [windows], "rows", to=TensorProto.INT64)
        summed = sum_over_taps(build.node("Gather", [build.constant("table", table), rows], "taps", axis=0))
    else:  # wide_slices, wide_matmul: one row of K·F per id, T_0[id] .. T_{K-1}[id] side by side
        wide = np.ascontiguousarray(tables.transpose(1, 0, 2).reshape(vocabulary, taps * filters))
        rows = build.node("Gather", [build.constant("table", wide), ids], "token_rows", axis=0)  # [batch, L, K·F]
        if layout == "wide_slices":  # the K diagonal slices [t + k, tap k], summed
            summed = build.node("Sum", [build.node("Slice", [
                rows, build.constant(f"start_{k}", np.array([k, k * filters], np.int64)),
                build.constant(f"end_{k}", np.array([k + positions, (k + 1) * filters], np.int64)),
                build.constant("axes_12", np.array([1, 2], np.int64))], f"tap_{k}") for k in range(taps)], "sum")
        else:  # the (t + k, tap k) blocks picked out tap-major by a constant index, then summed
            blocks = build.node("Reshape", [rows, build.constant("blocks_shape", np.array(
                [0, length * taps, filters], np.int64))], "blocks")
            window = (np.arange(taps)[:, None] + np.arange(positions)[None, :]) * taps + np.arange(taps)[:, None]
            summed = sum_over_taps(build.node("Gather", [blocks, build.constant("block_index", window)], "taps",
                                              axis=1))
    # summed: the convolution's output with its bias, channels-last: [batch, L', F] or [batch, 1, L' * F]; as
    # [batch, 1, L', F] it is an NHWC image (H = 1) and, for the pooling, one channel of L' x F
    image = build.node("Reshape", [summed, build.constant("image_shape", np.array([0, 1, -1, filters], np.int64))],
                       "image")
    if tail is not None:  # MaxPool's floor drops the last L' mod P positions, as the graph's own MaxPool did
        pooled = build.node("MaxPool", [image], "pooled", kernel_shape=[tail.pool, 1], strides=[tail.pool, 1])
        nhwc = build.node("Relu", [pooled], "relu")
        output, removed = tail.output, [match.gather, match.unsqueeze, match.transpose, match.conv, *tail.nodes]
    else:
        nhwc, output = image, match.conv.output[0]
        removed = [match.gather, match.unsqueeze, match.transpose, match.conv]
    # NHWC to NCHW: onnxruntime folds this Transpose into its next convolution's input reorder
    build.node("Transpose", [nhwc], "nchw", output=output, perm=[0, 3, 1, 2])
    tool.replace(removed, build.nodes)


# ---------------------------------------------------------------------------------------------------------------
# The ids' sanitizing; a convolution's bias and Relu


@dataclass
class _Sanitizing:
    """tf2onnx's nine nodes for Keras's ``where(ids < 0, ids + V, ids)`` in front of an embedding."""

    raw: str  # the ids before it (the graph's int32 input)
    vocabulary: int  # V


def _match_sanitizing(tool: _Graph, ids: str) -> _Sanitizing | None:
    """What ``ids`` is made from, when it is tf2onnx's sanitizing of the graph's int32 ids: Add(Mul(Cast(Less(
    Cast(x, float), 0)), Add(x, V)), Mul(x, Cast(Not(Less(...)))))."""
    total = tool.producer.get(ids)
    muls = [] if total is None or total.op_type != "Add" else [tool.producer.get(name) for name in total.input]
    if len(muls) != 2 or any(mul is None or mul.op_type != "Mul" for mul in muls):
        return None
    found = {}
    for mul in muls:
        for name in mul.input:
            cast = tool.producer.get(name)
            source = None if cast is None or cast.op_type != "Cast" else tool.producer.get(cast.input[0])
            if source is not None and source.op_type in ("Less", "Not"):
                found[source.op_type] = (source, _other_input(mul, name))
    if set(found) != {"Less", "Not"}:
        return None
    (less, plus), (negation, raw) = found["Less"], found["Not"]
    to_float, add = tool.producer.get(less.input[0]), tool.producer.get(plus or "")
    vocabulary = None if add is None or add.op_type != "Add" else tool.ints(_other_input(add, raw or "") or "")
    input_types = {i.name: i.type.tensor_type.elem_type for i in tool.graph.input}
    if (negation.input[0] != less.output[0] or to_float is None or to_float.op_type != "Cast"
            or to_float.input[0] != raw or tool.ints(less.input[1]) != [0] or vocabulary is None or len(vocabulary) != 1
            or input_types.get(raw) != TensorProto.INT32):
        return None
    return _Sanitizing(raw, vocabulary[0])


def _gather_ids(tool: _Graph, ids: str, vocabulary: int) -> str:
    """The ids a rewritten gather reads: the graph's raw ids when ``ids`` is tf2onnx's sanitizing of them for a
    table of ``vocabulary`` rows, else ``ids``. Gather reads a negative index i in [-V, -1] as row V + i, which is
    what the sanitizing maps it to, so every id in [-V, V) reads the row it read before; ids >= V still raise, and
    ids below -V now raise too (the sanitizing left them negative for Gather to wrap once more)."""
    sanitizing = _match_sanitizing(tool, ids)
    return sanitizing.raw if sanitizing is not None and sanitizing.vocabulary == vocabulary else ids


def fuse_conv_bias(onnx_bytes: bytes) -> bytes:
    """Conv -> Squeeze -> Add(bias [1, F, 1]) -> Relu as Conv(bias) -> Relu -> Squeeze (see the module's
    docstring): the same values, the bias added to each output and Relu commuting with Squeeze. The bytes
    unchanged when there is none."""
    model = onnx.load_from_string(onnx_bytes)
    tool = _Graph(model)
    changed = False
    for conv in [node for node in tool.graph.node if node.op_type == "Conv"]:
        kernel = tool.array(conv.input[1])
        squeeze = tool.only_consumer(conv.output[0])
        if (kernel is None or kernel.ndim != 4 or (len(conv.input) > 2 and conv.input[2]) or squeeze is None
                or squeeze.op_type != "Squeeze" or tool.axes(squeeze) not in ([2], [-2])):
            continue
        add = tool.only_consumer(squeeze.output[0])
        bias = None if add is None or add.op_type != "Add" else tool.array(_other_input(add, squeeze.output[0]) or "")
        relu = None if add is None else tool.only_consumer(add.output[0])
        if (bias is None or bias.shape != (1, kernel.shape[0], 1) or bias.dtype != np.float32 or relu is None
                or relu.op_type != "Relu"):
            continue
        build = _Builder(tool, "conv_bias")
        conv.input.append(build.constant("bias", bias.reshape(-1).copy()))
        activated = build.node("Relu", [conv.output[0]], "relu")
        pool = tool.only_consumer(relu.output[0])
        after = None if pool is None or pool.op_type != "GlobalMaxPool" else tool.only_consumer(pool.output[0])
        if after is not None and after.op_type == "Squeeze" and tool.axes(after) in ([2], [-1]):
            # Squeeze -> GlobalMaxPool -> Squeeze as GlobalMaxPool -> Squeeze of both: the pooling reads the
            # convolution's 4-D output, which onnxruntime then keeps in its blocked layout
            pooled = build.node("GlobalMaxPool", [activated], "pooled")
            build.axes_node("Squeeze", pooled, [2, 3], "squeezed", output=after.output[0])
            tool.replace([add, relu, squeeze, pool, after], build.nodes)
        else:
            squeeze.input[0], squeeze.output[0] = activated, relu.output[0]
            tool.replace([add, relu], build.nodes)
        changed = True
    return _finish(tool) if changed else onnx_bytes


# ---------------------------------------------------------------------------------------------------------------
# All of them, checked


@dataclass(frozen=True)
class Rewritten:
    onnx_bytes: bytes
    applied: tuple[str, ...]  # the rewrites that changed the graph, in order
    max_abs_diff: float | None  # the largest output difference on the random check rows (None: nothing applied)


def rewrite(onnx_bytes: bytes, layout: str = DEFAULT_LAYOUT, pool_tail: bool = True,
            check_rows: int = CHECK_ROWS) -> Rewritten:
    """Every rewrite, in the module docstring's order, then the new graph checked against the original on
    ``check_rows`` random token rows: FoldError when any output moves by more than TOLERANCE."""
    steps = ((NATIVE_GRU, native_gru), (SKIP_PADDING, skip_padding), (TRIM_PADDING, trim_padding),
             (FOLD_EMBEDDING_CONV, lambda data: fold_embedding_conv(data, layout, pool_tail)),
             (FUSE_CONV_BIAS, fuse_conv_bias))
    applied, current = [], onnx_bytes
    for name, step in steps:
        rewritten = step(current)
        if rewritten is not current:
            applied.append(name)
            current = rewritten
    if not applied:
        return Rewritten(onnx_bytes, (), None)
    tokens = random_tokens(onnx_bytes, check_rows)
    difference = max_abs_difference(onnx_bytes, current, tokens)
    if not difference <= TOLERANCE:
        raise FoldError(f"the rewritten graph ({', '.join(applied)}) differs from the original by {difference:.3g} "
                        f"on {check_rows} random token rows (tolerance {TOLERANCE})")
    return Rewritten(current, tuple(applied), difference)


def vocabulary_size(onnx_bytes: bytes) -> int:
    """The rows of the graph's smallest embedding table (a Gather from a 2-D float initializer): every id below
    it is valid for every table. For a graph before the rewrites (a folded table has K times the rows)."""
    model = onnx.load_from_string(onnx_bytes)
    tables = {init.name: init.dims[0] for init in model.graph.initializer
              if len(init.dims) == 2 and init.data_type == TensorProto.FLOAT}
    rows = [tables[node.input[0]] for node in model.graph.node if node.op_type == "Gather" and node.input[0] in tables]
    if not rows:
        raise FoldError("the graph has no embedding table")
    return min(rows)


def random_tokens(onnx_bytes: bytes, rows: int, seed: int = 0) -> np.ndarray:
    """Random int32 token rows for the graph's input: ids in [1, ``vocabulary_size``) with padding (0) in front,
    as the tokenizer pads: none in the first row, all but one id in the second, random lengths in the others."""
    vocabulary, length = vocabulary_size(onnx_bytes), _input_length(onnx.load_from_string(onnx_bytes))
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, vocabulary, (rows, length)).astype(np.int32)
    for row in range(1, rows):
        tokens[row, :length - 1 if row == 1 else rng.integers(0, length)] = 0
    return tokens


def _session(onnx_bytes: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def outputs(graph, tokens: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Every output of the graph (its bytes, or an onnxruntime session of it) for ``tokens``, as float64, by name."""
    session = _session(graph) if isinstance(graph, bytes) else graph
    names = [output.name for output in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    chunks = [session.run(None, {input_name: tokens[start:start + batch_size].astype(np.int32)})
              for start in range(0, len(tokens), batch_size)]
    return {name: np.concatenate([chunk[i] for chunk in chunks]).astype(np.float64) for i, name in enumerate(names)}


def max_abs_difference(before: bytes, after: bytes, tokens: np.ndarray,
                       batch_sizes: tuple[int, ...] = CHECK_BATCH_SIZES) -> float:
    """The largest |difference| between the two graphs' outputs (all of them, matched by name) on ``tokens``, run
    in batches of each of ``batch_sizes``: ``trim_padding`` cuts what a whole batch has in front, so one review at a
    time is where it cuts most."""
    old_session, new_session = _session(before), _session(after)  # loaded once for every batch size
    largest = 0.0
    for batch_size in batch_sizes:
        old, new = outputs(old_session, tokens, batch_size), outputs(new_session, tokens, batch_size)
        if sorted(old) != sorted(new):
            raise FoldError(f"the rewritten graph's outputs {sorted(new)} are not the original's {sorted(old)}")
        largest = max(largest, *(float(np.max(np.abs(old[name] - new[name]))) for name in old))
    return largest


# ---------------------------------------------------------------------------------------------------------------
# The command


def unrewritten_export(name: str, model_dir: Path) -> bytes:
    """The model's export before the rewrites: its Keras weights (``model_dir/keras``) exported as the pipeline
    does without them, with the committed graph's calibration grafted on (what ``make bench`` calls current)."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from artifacts.metadata import read_metadata
    from training import calibrate, export

    metadata = read_metadata(model_dir / f"{name}.json")
    model = load_keras(metadata, model_dir / "keras" / f"{name}.weights.h5")
    raw = export.to_onnx(model, metadata.max_len, rewrite=False)
    return calibrate.graft_calibration(raw, (model_dir / f"{name}.onnx").read_bytes())


def load_keras(metadata, weights: Path):
    """The Keras model of a metadata's training configuration with the weights at ``weights``, as the pipeline
    exports it (``training.models.folded``)."""
    import dataclasses

    from training import models
    from training.presets import TrainingConfig

    known = {field.name for field in dataclasses.fields(TrainingConfig)}
    config = TrainingConfig(**{key: tuple(value) if isinstance(value, list) else value
                               for key, value in metadata.config.items() if key in known})
    model = models.build(metadata.name, config)
    model.load_weights(weights)
    return models.folded(model, metadata.name, config)


def keras_parity(metadata, onnx_bytes: bytes, tokens: np.ndarray, model_dir: Path) -> float | None:
    """The pipeline's parity figure for a (calibrated) graph: its uncalibrated scores against the Keras model's
    (weights in ``model_dir/keras``) on ``tokens``; None without the weights."""
    weights = model_dir / "keras" / f"{metadata.name}.weights.h5"
    if not weights.is_file():
        return None
    from training import calibrate
    from training.export import onnx_scores

    keras_scores = load_keras(metadata, weights).predict(tokens, batch_size=256, verbose=0).reshape(-1)
    return float(np.max(np.abs(onnx_scores(calibrate.uncalibrated(onnx_bytes), tokens) - keras_scores)))


@dataclass
class CheckReviews:
    texts: list[str]  # the seeded sample the graphs are compared on
    source: str
    parity_texts: list[str] | None  # the pipeline's parity reviews, when the dataset is there


def check_reviews(data: Path | None, count: int) -> CheckReviews:
    """``count`` IMDB test reviews (a seeded sample) from the dataset (``data``, else the data setting), and its
    first PARITY_REVIEWS; without the dataset (and ``data``), the committed sample's test reviews and no parity
    reviews."""
    from training.data import DataError, dataset_path, load_imdb, require_data_file

    try:
        path = data or require_data_file(dataset_path())
        texts, source, parity = load_imdb(path)["test"].texts, str(path), True
    except DataError:
        if data is not None:
            raise
        texts = [review["text"] for review in map(json.loads, COMMITTED_SAMPLE.read_text("utf-8").splitlines())
                 if review["split"] == "test"]
        source, parity = f"{COMMITTED_SAMPLE.relative_to(REPO_ROOT)} (the dataset is not there)", False
    chosen = texts if len(texts) <= count else random.Random(SAMPLE_SEED).sample(texts, count)
    return CheckReviews(chosen, source, texts[:PARITY_REVIEWS] if parity else None)


def fold_model(name: str, model_dir: Path, reviews: CheckReviews, with_keras: bool = True, log=print,
               from_keras: bool = False) -> bool:
    """Rewrites one model's export in place; False when it has nothing to rewrite. FoldError, and nothing written,
    when the rewritten graph's outputs move by more than TOLERANCE on the reviews (or its parity with Keras is
    above it). ``from_keras``: rewrite the export before the rewrites (``unrewritten_export``), not the committed
    one, so that a rewrite added since applies to a model rewritten already."""
    from artifacts.loading import load_tokenizer
    from artifacts.metadata import ExportRecord, read_metadata, write_metadata

    metadata_path, onnx_path = model_dir / f"{name}.json", model_dir / f"{name}.onnx"
    metadata = read_metadata(metadata_path)
    previous = metadata.export if not from_keras else None
    before = onnx_path.read_bytes() if not from_keras else unrewritten_export(name, model_dir)
    result = rewrite(before)
    if not result.applied:
        log(f"{name}: nothing to rewrite")
        return False
    tokenizer = load_tokenizer(metadata, model_dir)
    difference = max_abs_difference(before, result.onnx_bytes, tokenizer.encode_batch(reviews.texts))
    if not difference <= TOLERANCE:
        raise FoldError(f"{name}: the rewritten graph's outputs differ from the current export's by "
                        f"{difference:.3g} on {len(reviews.texts)} test reviews (tolerance {TOLERANCE}); "
                        "nothing written")
    parity = None
    if with_keras and reviews.parity_texts is not None:
        parity = keras_parity(metadata, result.onnx_bytes, tokenizer.encode_batch(reviews.parity_texts), model_dir)
        if parity is not None and not parity <= TOLERANCE:
            raise FoldError(f"{name}: the rewritten graph's scores differ from Keras's by {parity:.3g} on "
                            f"{len(reviews.parity_texts)} test reviews (tolerance {TOLERANCE}); nothing written")
    record = ExportRecord(rewrites=[*(previous.rewrites if previous else []), *result.applied],
                          before_sha256=(previous.before_sha256 if previous and previous.before_sha256
                                         else hashlib.sha256(before).hexdigest()),
                          max_abs_diff=difference, reviews=len(reviews.texts))
    updates = {"onnx_sha256": hashlib.sha256(result.onnx_bytes).hexdigest(), "onnx_bytes": len(result.onnx_bytes),
               "export": record}
    if parity is not None:
        updates["parity_max_abs_diff"] = parity
    onnx_path.write_bytes(result.onnx_bytes)
    write_metadata(metadata.model_copy(update=updates), metadata_path)
    log(f"{name}: {', '.join(result.applied)}; outputs within {difference:.2e} of the current export's on "
        f"{len(reviews.texts)} test reviews" + ("" if parity is None else f"; parity with Keras {parity:.2e}")
        + f"; {len(before):,} -> {len(result.onnx_bytes):,} bytes")
    return True


def main(argv: list[str] | None = None) -> int:
    from training.data import DataError

    parser = argparse.ArgumentParser(prog="python -m training.fold", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", help="model names (default: every model in --out)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "models", help="the models' folder, rewritten in place")
    parser.add_argument("--data", type=Path, help="IMDB archive (default: the data setting, else the committed sample)")
    parser.add_argument("--reviews", type=int, default=CHECK_REVIEWS, help="test reviews to compare the graphs on")
    parser.add_argument("--no-keras-parity", dest="keras_parity", action="store_false",
                        help="do not measure the parity with Keras again (no TensorFlow)")
    parser.add_argument("--from-keras", action="store_true",
                        help="rewrite the export before the rewrites, made again from the Keras weights in --out/keras "
                             "with the committed calibration (for a rewrite added since the model was rewritten)")
    args = parser.parse_args(argv)
    names = args.models or sorted(path.stem for path in args.out.glob("*.onnx"))
    try:
        reviews = check_reviews(args.data, args.reviews)
        print(f"comparing on {len(reviews.texts)} test reviews from {reviews.source}", file=sys.stderr)
        for name in names:
            fold_model(name, args.out, reviews, args.keras_parity, log=lambda line: print(line, file=sys.stderr),
                       from_keras=args.from_keras)
    except (FoldError, DataError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
