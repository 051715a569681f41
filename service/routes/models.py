"""``GET /models``: the loaded models, their versions and what is known about them."""

from __future__ import annotations

from fastapi import APIRouter

from service.routes.dependencies import CoreDep
from service.schemas import ModelInfo, ModelsResponse

router = APIRouter(tags=["models"])


@router.get("/models", response_model=ModelsResponse, operation_id="list_models",
            summary="Loaded models and their metadata")
async def list_models(core: CoreDep) -> ModelsResponse:
    repository = core.repository
    return ModelsResponse(default=repository.default_name, models=[
        ModelInfo(
            name=m.name, version=m.version, default=m.name == repository.default_name, test_accuracy=m.test_accuracy,
            test_metrics=m.metadata.test_metrics, parameters=m.metadata.parameters, max_len=m.metadata.max_len,
            num_words=m.metadata.num_words, tokenizer=m.metadata.tokenizer,
            vocabulary_sha256=m.metadata.vocabulary.sha256,
            onnx_sha256=m.metadata.onnx_sha256, onnx_bytes=m.onnx_bytes,
            created=m.metadata.created, training=m.metadata.training, calibration=m.metadata.calibration,
            robustness=m.metadata.robustness, robustness_score=m.metadata.robustness_score,
        )
        for m in repository.models.values()
    ])
