"""Start-up faults: every broken model folder gives an error that names the file."""

import dataclasses
import json
import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from artifacts.metadata import Robustness
from service.app import create_app
from service.config import Settings
from service.repository import ModelLoadError, ModelRepository
from tests import fakes
from tests.conftest import MODEL_NAMES, MODELS_DIR


@pytest.fixture
def model_dir(tmp_path):
    target = tmp_path / "models"
    target.mkdir()
    for path in MODELS_DIR.iterdir():
        if path.suffix in (".onnx", ".json") and not path.stem.endswith("_history"):
            shutil.copy(path, target / path.name)
    return target


def edit_metadata(model_dir, model, **changes):
    path = model_dir / f"{model}.json"
    metadata = json.loads(path.read_text())
    metadata.update(changes)
    path.write_text(json.dumps(metadata))


def test_loads_every_model_with_its_metadata(model_dir):
    repository = ModelRepository.load(model_dir)
    assert repository.names == MODEL_NAMES and {"conv1d", "conv_lstm"} <= set(MODEL_NAMES)
    assert not repository.ready  # not before the warm-up
    repository.warm_up()
    assert repository.ready


def test_missing_model_directory(tmp_path):
    with pytest.raises(ModelLoadError, match=f"model directory {tmp_path / 'nowhere'} does not exist"):
        ModelRepository.load(tmp_path / "nowhere")


def test_directory_without_models(tmp_path):
    with pytest.raises(ModelLoadError, match="has no \\*.onnx files"):
        ModelRepository.load(tmp_path)


def test_corrupt_onnx_file_is_named(model_dir):
    path = model_dir / "conv1d.onnx"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="conv1d.onnx: sha256 does not match"):
        ModelRepository.load(model_dir)


def test_unloadable_onnx_file_is_named(model_dir):
    import hashlib

    garbage = b"this is not an onnx model"
    (model_dir / "conv1d.onnx").write_bytes(garbage)
    edit_metadata(model_dir, "conv1d", onnx_sha256=hashlib.sha256(garbage).hexdigest())
    with pytest.raises(ModelLoadError, match="conv1d.onnx: not a loadable ONNX model"):
        ModelRepository.load(model_dir)


def test_missing_metadata_is_named(model_dir):
    (model_dir / "conv_lstm.json").unlink()
    with pytest.raises(ModelLoadError, match="conv_lstm.json: metadata file for conv_lstm.onnx is missing"):
        ModelRepository.load(model_dir)


def test_metadata_that_is_not_json_is_named(model_dir):
    (model_dir / "conv_lstm.json").write_text("{oops")
    with pytest.raises(ModelLoadError, match="conv_lstm.json: metadata is not valid JSON"):
        ModelRepository.load(model_dir)


def test_metadata_that_does_not_match_the_model(model_dir):
    edit_metadata(model_dir, "conv1d", max_len=400)
    with pytest.raises(ModelLoadError,
                       match="conv1d.onnx: input tokens is tensor\\(int32\\) .*expects int32 \\[batch, 400\\]"):
        ModelRepository.load(model_dir)


def test_metadata_with_a_missing_field(model_dir):
    edit_metadata(model_dir, "conv1d", num_words="many")
    with pytest.raises(ModelLoadError, match="conv1d.json: metadata does not fit the schema \\(field 'num_words': "
                                             "Input should be a valid integer"):
        ModelRepository.load(model_dir)


def test_metadata_naming_another_model(model_dir):
    edit_metadata(model_dir, "conv1d", name="conv_lstm")
    with pytest.raises(ModelLoadError, match="name 'conv_lstm' does not match the file name conv1d.onnx"):
        ModelRepository.load(model_dir)


def test_vocabulary_with_a_wrong_checksum(model_dir):
    vocabulary = model_dir / "vocab_10000.json"
    words = json.loads(vocabulary.read_text())
    words["zzznewword"] = 1
    vocabulary.write_text(json.dumps(words))
    with pytest.raises(ModelLoadError, match="vocab_10000.json: sha256 does not match the vocabulary checksum"):
        ModelRepository.load(model_dir)


def test_missing_vocabulary(model_dir):
    (model_dir / "vocab_10000.json").unlink()
    with pytest.raises(ModelLoadError, match="vocab_10000.json: vocabulary file named in conv1d.json is missing"):
        ModelRepository.load(model_dir)


def test_start_up_fails_with_the_error(model_dir):
    (model_dir / "conv1d.json").unlink()
    app = create_app(Settings(model_dir=model_dir))
    with pytest.raises(ModelLoadError, match="conv1d.json"):
        with TestClient(app):
            pass


def test_skip_broken_models_serves_the_healthy_ones(model_dir):
    (model_dir / "conv1d.json").write_text("{oops")
    with TestClient(create_app(Settings(model_dir=model_dir, skip_broken_models=True))) as client:
        for _ in range(200):
            ready = client.get("/readyz")
            if ready.status_code == 200:
                break
        body = ready.json()
        assert body["ready"] is True and body["models"] == [name for name in MODEL_NAMES if name != "conv1d"]
        assert "conv1d.json: metadata is not valid JSON" in body["failed"]["conv1d"]
        assert client.post("/predict", json={"reviews": ["great"]}).json()["results"][0]["model"] != "conv1d"
        response = client.post("/predict?model=conv1d", json={"reviews": ["great"]})
        assert response.status_code == 422 and "unknown model 'conv1d'" in response.text


def test_skip_broken_models_still_needs_one_model(model_dir):
    for name in MODEL_NAMES:
        (model_dir / f"{name}.json").write_text("{oops")
    with pytest.raises(ModelLoadError, match="no model in .* could be loaded"):
        ModelRepository.load(model_dir, skip_broken=True)


def test_metadata_without_a_required_field_names_it(model_dir):
    path = model_dir / "conv1d.json"
    metadata = json.loads(path.read_text())
    del metadata["vocabulary"]
    path.write_text(json.dumps(metadata))
    with pytest.raises(ModelLoadError, match="conv1d.json: metadata does not fit the schema \\(field 'vocabulary': "
                                             "Field required"):
        ModelRepository.load(model_dir)


def test_every_committed_metadata_file_fits_the_schema():
    from artifacts.metadata import read_metadata

    for name in MODEL_NAMES:
        metadata = read_metadata(MODELS_DIR / f"{name}.json")
        assert metadata.name == name and metadata.test_metrics is not None and metadata.training is not None


def tiny_model_dir(tmp_path, *, score_type=None, outputs=("logit",)):
    """A one-model folder with a tiny ONNX graph: logit = mean(token ids) / 10 - 1, score = sigmoid(logit),
    in float64 by default (the calibrated exports' layout), with the extra ``outputs``."""
    import hashlib

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from artifacts.metadata import ModelMetadata, VocabularyFile, write_metadata
    from artifacts.vocabulary import save_word_index

    score_type = score_type or TensorProto.DOUBLE
    nodes = [helper.make_node("Cast", ["tokens"], ["as_float"], to=score_type),
             helper.make_node("ReduceMean", ["as_float"], ["mean"], axes=[1], keepdims=1),
             helper.make_node("Div", ["mean", "ten"], ["scaled"]),
             helper.make_node("Sub", ["scaled", "one"], ["logit"]),
             helper.make_node("Sigmoid", ["logit"], ["score"]),
             helper.make_node("Identity", ["logit"], ["extra"])]
    dtype = np.float64 if score_type == TensorProto.DOUBLE else np.float32
    initializers = [numpy_helper.from_array(np.array(10, dtype), "ten"),
                    numpy_helper.from_array(np.array(1, dtype), "one")]
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("tokens", TensorProto.INT32, ["batch", 8])],
        [helper.make_tensor_value_info(name, score_type, ["batch", 1]) for name in ("score", *outputs)],
        initializers)
    model_bytes = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()
    onnx.checker.check_model(onnx.load_from_string(model_bytes))
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "tiny.onnx").write_bytes(model_bytes)
    sha256 = save_word_index({"good": 1, "bad": 2}, folder / "vocab.json")
    write_metadata(ModelMetadata(name="tiny", max_len=8, num_words=10, vocabulary=VocabularyFile(
        file="vocab.json", sha256=sha256), onnx_sha256=hashlib.sha256(model_bytes).hexdigest()),
        folder / "tiny.json")
    return folder


def test_a_double_score_with_a_logit_output_is_served_with_its_logits(tmp_path):
    model = ModelRepository.load(tiny_model_dir(tmp_path)).models["tiny"]
    tokens = model.tokenizer.encode_batch(["good bad", "bad bad bad"])
    expected_logits = tokens.mean(axis=1, dtype=np.float64) / 10 - 1
    np.testing.assert_allclose(model.logits(tokens), expected_logits, rtol=1e-12)
    np.testing.assert_allclose(model.predict(tokens), 1 / (1 + np.exp(-expected_logits)), rtol=1e-12)
    assert model.predict(tokens).dtype == np.float64


def test_without_a_logit_output_the_logits_come_from_the_scores(tmp_path):
    from onnx import TensorProto

    model = ModelRepository.load(tiny_model_dir(tmp_path, score_type=TensorProto.FLOAT, outputs=())).models["tiny"]
    tokens = model.tokenizer.encode_batch(["good bad"])
    np.testing.assert_allclose(model.logits(tokens), tokens.mean(axis=1) / 10 - 1, atol=1e-6)


def test_an_output_the_service_does_not_understand_stops_start_up(tmp_path):
    with pytest.raises(ModelLoadError, match="tiny.onnx: outputs \\['logit', 'extra'\\] beside the score; only an "
                                             "optional 'logit'"):
        ModelRepository.load(tiny_model_dir(tmp_path, outputs=("logit", "extra")))


def test_the_default_is_the_best_robustness_score_and_models_without_one_come_after():
    def robust(name, accuracy, edited):
        model = fakes.model(name, accuracy=accuracy)
        figures = Robustness(cad_dev_pairs=1, cad_dev_original=1.0, cad_dev_edited=edited,
                             cad_dev_pair_consistency=edited, cad_dev_originals_in_training=False, checklist_reviews=1,
                             checklist=0.9, checklist_by_category={}, snippet_reviews=1, snippets_first_sentence=0.7,
                             snippets_last_sentence=0.7)
        return dataclasses.replace(model, metadata=model.metadata.model_copy(update={"robustness": figures}))

    accurate, robust_one = robust("accurate", 0.92, 0.3), robust("robust", 0.90, 0.8)
    unmeasured = fakes.model("unmeasured", accuracy=0.99)
    assert robust_one.metadata.robustness_score == pytest.approx((0.90 + 0.8 + 0.9 + 0.7) / 4)
    assert ModelRepository.of([accurate, unmeasured, robust_one]).default_name == "robust"
    assert ModelRepository.of([unmeasured, fakes.model("other", accuracy=0.5)]).default_name == "unmeasured"
