"""Exact rewrites of the exports (training/fold.py, issue #18): each committed conv model's rewritten graph against
its current export, rebuilt from the Keras weights (benchmarks/exports.py); the rewritten structure; graphs without
the patterns come back unchanged; small Keras models of every conv family export rewritten with parity to Keras;
the command rewrites a current export in place and refuses one whose scores would move."""

import json
import shutil

import numpy as np
import onnx
import pytest

from artifacts.loading import load_tokenizer
from artifacts.metadata import read_metadata, write_metadata
from artifacts.tokenizer import ID_BLOCKS
from artifacts.vocabulary import file_sha256
from service.repository import ModelRepository
from tests.conftest import MODELS_DIR, read_sample_reviews
from training import calibrate, fold
from training.data import DATA_DIR_ENV

CONV_MODELS = ["conv1d", "conv1d_tuned", "conv_lstm", "conv_lstm_tuned"]
BAG_MODELS = ["bigram_bag", "robust_bag"]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def current_exports():
    """Each conv model's current export, before the rewrites: its Keras weights through the unrewritten export,
    with the committed graph's calibration (what the benchmark measures as "current")."""
    return {name: fold.unrewritten_export(name, MODELS_DIR) for name in CONV_MODELS}


@pytest.fixture(scope="module")
def sample_test_reviews():
    return [review["text"] for review in read_sample_reviews() if review["split"] == "test"]


def real_tokens(name: str, reviews: list[str]) -> np.ndarray:
    return load_tokenizer(read_metadata(MODELS_DIR / f"{name}.json"), MODELS_DIR).encode_batch(reviews)


def random_rows(name: str) -> np.ndarray:
    """Random ids below the vocabulary with random padding in front, plus a row of padding alone, a row without
    padding, a row with one word at the very end and one with the last id everywhere."""
    metadata = read_metadata(MODELS_DIR / f"{name}.json")
    vocabulary, length = vocabulary_of(name), metadata.max_len
    rng = np.random.default_rng(3)
    rows = rng.integers(1, vocabulary, (64, length), dtype=np.int32)
    for row in range(60):
        rows[row, :rng.integers(0, length)] = 0
    rows[60] = 0
    rows[62, :-1] = 0  # one word at the very end
    rows[63] = vocabulary - 1
    return rows


def vocabulary_of(name: str) -> int:
    """The ids the model reads: num_words times the tokenizer rule's id blocks."""
    metadata = read_metadata(MODELS_DIR / f"{name}.json")
    return metadata.num_words * ID_BLOCKS[metadata.tokenizer]


def graph_outputs(onnx_bytes: bytes, tokens: np.ndarray) -> dict[str, np.ndarray]:
    return fold.outputs(onnx_bytes, tokens)


@pytest.mark.parametrize("name", CONV_MODELS)
def test_each_committed_conv_model_scores_as_its_current_export_within_1e_5(name, current_exports,
                                                                              sample_test_reviews):
    committed = (MODELS_DIR / f"{name}.onnx").read_bytes()
    current = current_exports[name]
    for tokens in (random_rows(name), real_tokens(name, sample_test_reviews)):
        before, after = graph_outputs(current, tokens), graph_outputs(committed, tokens)
        assert sorted(before) == sorted(after) == sorted(["Identity:0", "logit"])
        for output in before:
            assert np.max(np.abs(before[output] - after[output])) <= TOLERANCE, output
        assert np.std(before["Identity:0"]) > 0.05  # scores that vary: the comparison means something


@pytest.mark.parametrize("name", CONV_MODELS)
def test_rewriting_the_current_export_again_gives_the_committed_scores(name, current_exports):
    result = fold.rewrite(current_exports[name])
    assert result.applied == tuple(read_metadata(MODELS_DIR / f"{name}.json").export.rewrites)
    tokens = random_rows(name)
    assert fold.max_abs_difference(result.onnx_bytes, (MODELS_DIR / f"{name}.onnx").read_bytes(), tokens) <= 1e-6


@pytest.mark.parametrize("name", CONV_MODELS)
def test_ids_from_minus_v_to_v_read_the_rows_they_read_before_and_the_others_raise(name, current_exports):
    """tf2onnx's sanitizing maps an id in [-V, -1] to id + V; the rewritten graph reads the raw ids and Gather's own
    negative indexing maps them the same way. Ids >= V raise, as before; ids below -V, which the sanitizing left
    negative for Gather to wrap a second time, now raise too."""
    committed = (MODELS_DIR / f"{name}.onnx").read_bytes()
    vocabulary = vocabulary_of(name)
    assert vocabulary == fold.vocabulary_size(current_exports[name])
    tokens = random_rows(name)[:8]
    tokens[:, -20:] = -np.arange(1, 21, dtype=np.int32)  # -1 .. -20: the last rows of the table
    tokens[:4, -30:-25] = -vocabulary  # mapped to 0, the padding's row
    before, after = graph_outputs(current_exports[name], tokens), graph_outputs(committed, tokens)
    assert max(np.max(np.abs(before[key] - after[key])) for key in before) <= TOLERANCE
    for bad_id, raised_before in ((vocabulary, True), (-vocabulary - 1, False)):
        bad = tokens.copy()
        bad[:, -1] = bad_id
        if raised_before:
            with pytest.raises(Exception, match="out of bounds|indices"):
                graph_outputs(current_exports[name], bad)
        else:
            graph_outputs(current_exports[name], bad)
        with pytest.raises(Exception, match="out of bounds|indices"):
            graph_outputs(committed, bad)


def embedding_feeds_a_conv(graph: onnx.GraphProto) -> bool:
    """Whether a Gather of a 2-D float table reaches a Conv through Unsqueeze/Transpose (tf2onnx's Conv1D)."""
    tables = {init.name for init in graph.initializer
              if len(init.dims) == 2 and init.data_type == onnx.TensorProto.FLOAT}
    producers = {output: node for node in graph.node for output in node.output}
    for conv in (node for node in graph.node if node.op_type == "Conv"):
        node = producers.get(conv.input[0])
        while node is not None and node.op_type in ("Transpose", "Unsqueeze", "Reshape", "Identity"):
            node = producers.get(node.input[0])
        if node is not None and node.op_type == "Gather" and node.input[0] in tables:
            return True
    return False


@pytest.mark.parametrize("name", CONV_MODELS)
def test_the_rewritten_graph_has_no_conv_on_the_embedding_any_more(name, current_exports):
    before = onnx.load_from_string(current_exports[name]).graph
    after = onnx.load(MODELS_DIR / f"{name}.onnx").graph
    assert embedding_feeds_a_conv(before) and not embedding_feeds_a_conv(after)
    kernels = {init.name: onnx.numpy_helper.to_array(init) for graph in (before, after) for init in graph.initializer}
    before_convs = [kernels[node.input[1]] for node in before.node if node.op_type == "Conv"]
    after_convs = [kernels[node.input[1]] for node in after.node if node.op_type == "Conv"]
    assert len(before_convs) == len(after_convs) == 2
    # the second convolution is left as it is; the other one builds the look-up index: K one-hot kernels, 1 channel
    np.testing.assert_array_equal(after_convs[1], before_convs[1])
    taps = before_convs[0].shape[-1]
    assert after_convs[0].shape == (taps, 1, taps) and set(np.unique(after_convs[0])) == {0, taps}
    assert not any(np.array_equal(before_convs[0], kernel) for kernel in kernels.values() if kernel.ndim == 4
                   and kernel.shape == before_convs[0].shape and kernel is not before_convs[0])
    # one table of V * K rows (T_k[id] at row id * K + k), gathered once, and the taps summed by a MatMul
    config = read_metadata(MODELS_DIR / f"{name}.json").config
    (table,) = [init for init in after.initializer if init.name.endswith("/table")]
    embedding_rows = next(init.dims[0] for init in before.initializer if len(init.dims) == 2
                          and init.dims[1] == config["embedding_dim"] and init.data_type == onnx.TensorProto.FLOAT)
    assert list(table.dims) == [embedding_rows * config["kernel_size"], config["filters"]]
    gathers = [node for node in after.node if node.op_type == "Gather" and node.input[0] == table.name]
    assert len(gathers) == 1 and any(node.op_type == "MatMul" and node.name.startswith("fold") for node in after.node)
    assert not any("/embedding" in node.name for node in after.node)  # tf2onnx's sanitizing of the ids is gone
    # the calibration after the logit is the current export's, node for node and value for value (only the name of
    # the logit it reads, which tf2onnx takes from Keras's layer counters, can differ in the rebuilt export)
    def calibration(graph):
        nodes = [(node.op_type, list(node.input), list(node.output)) for node in graph.node
                 if node.name.startswith("calibration/")]
        read = {name for _, inputs, _ in nodes for name in inputs}
        values = {init.name: onnx.numpy_helper.to_array(init).tolist() for init in graph.initializer
                  if init.name in read}
        return [(op, inputs[1:] if op == "Cast" else inputs, outputs) for op, inputs, outputs in nodes], values

    assert calibration(after) == calibration(before) and calibration(after)[0]
    assert calibrate.temperature_of(onnx.load(MODELS_DIR / f"{name}.onnx")) == calibrate.temperature_of(
        onnx.load_from_string(current_exports[name]))

    def signature(values):
        return [(v.name, v.type.tensor_type.elem_type, [d.dim_value for d in v.type.tensor_type.shape.dim])
                for v in values]

    assert signature(after.input) == signature(before.input) == [("tokens", onnx.TensorProto.INT32, [0, 500])]
    assert signature(after.output) == signature(before.output)


@pytest.mark.parametrize("name", ["conv_lstm", "conv_lstm_tuned"])
def test_the_recurrent_layer_is_one_onnx_operator_that_starts_after_the_padding(name, current_exports):
    before = [node.op_type for node in onnx.load_from_string(current_exports[name]).graph.node]
    after = onnx.load(MODELS_DIR / f"{name}.onnx").graph
    assert ("Loop" in before) == (name == "conv_lstm_tuned")  # tf2onnx writes the Keras GRU as a Loop
    (rnn,) = [node for node in after.node if node.op_type in ("LSTM", "GRU", "Loop", "Scan")]
    assert rnn.op_type == ("GRU" if name == "conv_lstm_tuned" else "LSTM")
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in rnn.attribute}
    assert attributes["direction"] == b"reverse" and rnn.input[4]  # sequence_lens: the steps after the padding
    if rnn.op_type == "GRU":
        assert attributes["linear_before_reset"] == 1  # Keras's reset_after=True


def test_a_review_of_padding_alone_or_without_padding_scores_as_before(current_exports):
    for name in ("conv_lstm", "conv_lstm_tuned"):
        length = read_metadata(MODELS_DIR / f"{name}.json").max_len
        tokens = np.zeros((3, length), np.int32)
        tokens[1] = np.arange(1, length + 1) % 5000 + 1  # no padding at all
        tokens[2, -3:] = [1, 14, 22]  # three words at the very end
        before, after = (graph_outputs(current_exports[name], tokens),
                         graph_outputs((MODELS_DIR / f"{name}.onnx").read_bytes(), tokens))
        assert max(np.max(np.abs(before[key] - after[key])) for key in before) <= TOLERANCE


def every_padding_length(name: str) -> np.ndarray:
    """One row per count of padding ids in front, 0 .. max_len (the last: padding alone), random ids after it."""
    length = read_metadata(MODELS_DIR / f"{name}.json").max_len
    tokens = np.random.default_rng(5).integers(1, vocabulary_of(name), (length + 1, length), dtype=np.int32)
    for lead in range(length + 1):
        tokens[lead, :lead] = 0
    return tokens


def test_conv1d_scores_a_review_with_any_amount_of_padding_as_before_alone_or_in_a_batch(current_exports):
    committed = (MODELS_DIR / "conv1d.onnx").read_bytes()
    tokens = every_padding_length("conv1d")
    for batch_size in (1, 7, 501):  # alone (the most cut), in mixed batches (the least padding of the batch)
        before = fold.outputs(current_exports["conv1d"], tokens, batch_size)
        after = fold.outputs(committed, tokens, batch_size)
        assert max(np.max(np.abs(before[key] - after[key])) for key in before) <= TOLERANCE, batch_size
    assert np.std(before["Identity:0"]) > 0.05


def ids_the_embedding_reads(onnx_bytes: bytes, tokens: np.ndarray) -> int:
    """How many ids of each row the graph's first Gather of a table reads: its index input, made an output."""
    model = onnx.load_from_string(onnx_bytes)
    (trim,) = [node for node in model.graph.node if node.op_type == "Slice" and node.name.startswith("trim")]
    model.graph.output.append(onnx.helper.make_tensor_value_info(trim.output[0], onnx.TensorProto.INT32, None))
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run([trim.output[0]], {"tokens": tokens})[0].shape[1]


def test_conv1d_reads_only_the_end_of_a_batch_that_is_padded_in_front(current_exports):
    assert fold.TRIM_PADDING in read_metadata(MODELS_DIR / "conv1d.json").export.rewrites
    committed = (MODELS_DIR / "conv1d.onnx").read_bytes()
    tokens = every_padding_length("conv1d")
    # a review of 100 ids: the cut keeps them, one window that reads padding alone (6 * 5 + 5 + 6 = 41 ids wide
    # for a second convolution of 7 over pools of 5 over a first convolution of 7) and what aligns the start with
    # the pooling's stride
    read = ids_the_embedding_reads(committed, tokens[400:401])
    assert 141 <= read < 141 + 5 and (500 - read) % 5 == 0
    assert ids_the_embedding_reads(committed, tokens[0:1]) == 500  # no padding: nothing cut
    assert ids_the_embedding_reads(committed, tokens[20:30]) == 500  # too little padding to cut any
    assert ids_the_embedding_reads(committed, tokens[400:480]) == read  # a batch: the least padded review counts
    assert ids_the_embedding_reads(committed, tokens[500:501]) == 500  # padding alone: its first id reads as a word


@pytest.mark.parametrize("lead", range(0, 80))
def test_the_cut_starts_on_the_pooling_s_stride_and_leaves_one_window_of_padding_alone(lead):
    stride, field = 5, 41
    start = int(fold.padding_starts(80, stride, field)[lead])
    assert start % stride == 0 and 0 <= start <= lead
    if start:  # the position where the cut sequence starts still reads padding alone, the one after it does not
        assert start + field <= lead < start + stride + field
    else:
        assert lead < stride + field


@pytest.mark.parametrize("name", ["conv1d_tuned", "conv_lstm", "conv_lstm_tuned"])
def test_a_graph_whose_pooling_counts_the_padding_is_not_cut(name, current_exports):
    # conv1d_tuned pools the max and the mean over time (the mean counts every position); the others end in a
    # recurrent layer (skip_padding's business)
    assert fold.trim_padding(current_exports[name]) is current_exports[name]


@pytest.mark.parametrize("name", BAG_MODELS)
def test_a_graph_without_the_patterns_comes_back_byte_for_byte(name):
    original = (MODELS_DIR / f"{name}.onnx").read_bytes()
    assert fold.fold_embedding_conv(original) is original
    assert fold.native_gru(original) is original
    assert fold.skip_padding(original) is original
    assert fold.trim_padding(original) is original
    result = fold.rewrite(original)
    assert result.applied == () and result.onnx_bytes is original and result.max_abs_diff is None


@pytest.mark.parametrize("name", CONV_MODELS)
def test_rewriting_a_rewritten_graph_changes_nothing(name):
    committed = (MODELS_DIR / f"{name}.onnx").read_bytes()
    assert fold.rewrite(committed).onnx_bytes is committed


@pytest.mark.parametrize("name", CONV_MODELS)
def test_the_metadata_records_the_rewrites_and_the_service_loads_the_rewritten_graph(name):
    metadata = read_metadata(MODELS_DIR / f"{name}.json")
    assert metadata.onnx_sha256 == file_sha256(MODELS_DIR / f"{name}.onnx")
    assert metadata.onnx_bytes == (MODELS_DIR / f"{name}.onnx").stat().st_size
    assert fold.FOLD_EMBEDDING_CONV in metadata.export.rewrites
    assert metadata.export.max_abs_diff <= TOLERANCE and metadata.export.reviews == 512
    assert metadata.export.before_sha256 != metadata.onnx_sha256
    assert metadata.parity_max_abs_diff <= TOLERANCE
    raw = json.loads((MODELS_DIR / f"{name}.json").read_text())
    assert set(raw["export"]) == {"rewrites", "before_sha256", "max_abs_diff", "reviews"}
    repository = ModelRepository.load(MODELS_DIR)
    assert repository.models[name].version == metadata.onnx_sha256[:12]


def randomized(model, seed: int):
    """The model with every weight drawn at random, large enough that its scores spread over (0, 1)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, weight.shape).astype(np.float32) for weight in model.get_weights()])
    return model


@pytest.mark.parametrize("family, recurrent", [("conv1d", "lstm"), ("conv_lstm", "lstm"), ("conv_lstm", "gru")])
def test_a_small_keras_model_of_each_conv_family_exports_rewritten_with_parity_to_keras(family, recurrent):
    from training import export, models, presets

    config = presets.TrainingConfig(family=family, num_words=300, max_len=60, embedding_dim=12, filters=6,
                                    kernel_size=4, pool_size=3, recurrent=recurrent, recurrent_units=5,
                                    pooling="max+avg" if family == "conv1d" else "max")
    model = randomized(models.build("small", config), seed=len(family) + len(recurrent))
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 300, (64, 60), dtype=np.int32)
    for row in range(48):  # padding in front, as the tokenizer writes it, of every length
        tokens[row, :row + 8] = 0
    scores = model.predict(tokens, verbose=0).reshape(-1)
    assert np.std(scores) > 0.01  # a thousand times the tolerance: the parity means something
    onnx_bytes = export.to_onnx(model, 60)
    assert export.check_parity(onnx_bytes, scores, tokens) <= export.PARITY_TOLERANCE
    graph = onnx.load_from_string(onnx_bytes).graph
    assert not embedding_feeds_a_conv(graph)
    kinds = [node.op_type for node in graph.node]
    assert "Loop" not in kinds
    if family == "conv_lstm":
        (rnn,) = [node for node in graph.node if node.op_type in ("LSTM", "GRU")]
        assert rnn.op_type == recurrent.upper() and rnn.input[4]
    unrewritten = export.to_onnx(model, 60, rewrite=False)
    assert embedding_feeds_a_conv(onnx.load_from_string(unrewritten).graph)
    assert export.check_parity(unrewritten, scores, tokens) <= export.PARITY_TOLERANCE


@pytest.fixture
def current_model_folder(tmp_path, current_exports, monkeypatch):
    """A model folder with conv1d's current (unrewritten) export, and no dataset: the command reads the committed
    sample's test reviews."""
    metadata = read_metadata(MODELS_DIR / "conv1d.json")
    (tmp_path / "conv1d.onnx").write_bytes(current_exports["conv1d"])
    write_metadata(metadata.model_copy(update={"onnx_sha256": file_sha256(tmp_path / "conv1d.onnx"),
                                               "onnx_bytes": len(current_exports["conv1d"]), "export": None}),
                   tmp_path / "conv1d.json")
    shutil.copy(MODELS_DIR / metadata.vocabulary.file, tmp_path / metadata.vocabulary.file)
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "no-data-here"))
    return tmp_path


def test_the_command_rewrites_a_current_export_in_place_and_records_it(current_model_folder, capsys):
    before = (current_model_folder / "conv1d.onnx").read_bytes()
    assert fold.main(["--out", str(current_model_folder), "--models", "conv1d", "--no-keras-parity"]) == 0
    after = (current_model_folder / "conv1d.onnx").read_bytes()
    metadata = read_metadata(current_model_folder / "conv1d.json")
    assert after != before and metadata.onnx_sha256 == file_sha256(current_model_folder / "conv1d.onnx")
    assert metadata.onnx_bytes == len(after)
    assert metadata.export.rewrites == [fold.TRIM_PADDING, fold.FOLD_EMBEDDING_CONV, fold.FUSE_CONV_BIAS]
    assert metadata.export.before_sha256 == file_sha256_of(before)
    assert metadata.export.reviews == 239 and metadata.export.max_abs_diff <= TOLERANCE  # the committed sample
    assert "tests/data/imdb_sample.jsonl" in capsys.readouterr().err
    repository = ModelRepository.load(current_model_folder)  # the service accepts it
    assert repository.names == ["conv1d"]
    # run again: nothing left to rewrite, nothing written
    assert fold.main(["--out", str(current_model_folder), "--models", "conv1d", "--no-keras-parity"]) == 0
    assert (current_model_folder / "conv1d.onnx").read_bytes() == after
    assert "conv1d: nothing to rewrite" in capsys.readouterr().err


def test_from_keras_the_command_adds_a_new_rewrite_to_a_model_rewritten_before_it_existed(current_model_folder,
                                                                                             current_exports, capsys):
    # conv1d as the rewrites before trim_padding left it: a folded graph, which no rewrite matches any more
    older = fold.fuse_conv_bias(fold.fold_embedding_conv(current_exports["conv1d"]))
    (current_model_folder / "conv1d.onnx").write_bytes(older)
    metadata = read_metadata(current_model_folder / "conv1d.json")
    write_metadata(metadata.model_copy(update={"onnx_sha256": file_sha256(current_model_folder / "conv1d.onnx"),
                                               "onnx_bytes": len(older)}), current_model_folder / "conv1d.json")
    assert fold.main(["--out", str(current_model_folder), "--models", "conv1d", "--no-keras-parity"]) == 0
    assert "conv1d: nothing to rewrite" in capsys.readouterr().err
    (current_model_folder / "keras").mkdir()
    shutil.copy(MODELS_DIR / "keras" / "conv1d.weights.h5", current_model_folder / "keras")
    assert fold.main(["--out", str(current_model_folder), "--models", "conv1d", "--no-keras-parity",
                      "--from-keras"]) == 0
    metadata = read_metadata(current_model_folder / "conv1d.json")
    assert metadata.export.rewrites == [fold.TRIM_PADDING, fold.FOLD_EMBEDDING_CONV, fold.FUSE_CONV_BIAS]
    after = (current_model_folder / "conv1d.onnx").read_bytes()
    assert metadata.onnx_sha256 == file_sha256_of(after)
    assert fold.max_abs_difference(current_exports["conv1d"], after, every_padding_length("conv1d")) <= TOLERANCE


def file_sha256_of(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_the_command_refuses_a_rewritten_graph_whose_scores_would_move(current_model_folder, monkeypatch, capsys):
    real_rewrite = fold.rewrite

    def faulty_rewrite(onnx_bytes, *args, **kwargs):
        """The real rewrite, then the folded table nudged by 1e-3: a fault the rewrite's own check does not see."""
        result = real_rewrite(onnx_bytes, *args, **kwargs)
        model = onnx.load_from_string(result.onnx_bytes)
        table = next(init for init in model.graph.initializer if init.name.endswith("/table"))
        values = onnx.numpy_helper.to_array(table) + np.float32(1e-3)
        table.CopyFrom(onnx.numpy_helper.from_array(values, table.name))
        return fold.Rewritten(model.SerializeToString(), result.applied, result.max_abs_diff)

    monkeypatch.setattr(fold, "rewrite", faulty_rewrite)
    before = {path.name: path.read_bytes() for path in current_model_folder.iterdir() if path.is_file()}
    assert fold.main(["--out", str(current_model_folder), "--models", "conv1d", "--no-keras-parity"]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: conv1d: the rewritten graph's outputs differ from the current export's by ")
    assert "nothing written" in error
    assert {path.name: path.read_bytes() for path in current_model_folder.iterdir() if path.is_file()} == before


def test_the_rewrite_refuses_a_graph_it_would_misread(current_exports, monkeypatch):
    """Fault injection inside the rewrite: tables computed wrongly are caught by its check on random rows."""
    monkeypatch.setattr(fold, "tap_tables", lambda embedding, kernel: np.einsum(
        "vd,fdk->kvf", embedding, kernel[:, :, 0, ::-1]).astype(np.float32))  # the taps in the wrong order
    with pytest.raises(fold.FoldError, match="differs from the original by"):
        fold.rewrite(current_exports["conv1d"])


def test_a_loop_whose_body_is_not_keras_s_gru_step_is_left_as_it_is(current_exports, monkeypatch):
    """The GRU rewrite checks the Loop's body against Keras's GRU step (reset_after=True); with the step of
    reset_after=False (the reset gate before the recurrent projection) the same body does not match."""
    loop_graph = current_exports["conv_lstm_tuned"]
    assert fold.native_gru(loop_graph) is not loop_graph

    def reset_before(x, h, kernel, recurrent, bias):
        units = recurrent.shape[0]
        projected, hidden = x @ kernel + bias[0], h @ recurrent + bias[1]
        z = 1 / (1 + np.exp(-(projected[:, :units] + hidden[:, :units])))
        r = 1 / (1 + np.exp(-(projected[:, units:2 * units] + hidden[:, units:2 * units])))
        candidate = np.tanh(projected[:, 2 * units:] + (r * h) @ recurrent[:, 2 * units:] + bias[1, 2 * units:])
        return z * h + (1 - z) * candidate

    monkeypatch.setattr(fold, "_gru_step", reset_before)
    assert fold.native_gru(loop_graph) is loop_graph


def test_the_benchmark_grafts_the_committed_calibration_exactly():
    from training import calibrate

    committed = (MODELS_DIR / "conv1d.onnx").read_bytes()
    grafted = calibrate.graft_calibration(calibrate.uncalibrated(committed), committed)
    tokens = random_rows("conv1d")[:16]
    assert fold.max_abs_difference(committed, grafted, tokens) == 0
    assert ([n.op_type for n in onnx.load_from_string(grafted).graph.node]
            == [n.op_type for n in onnx.load_from_string(committed).graph.node])
