"""The BentoML prediction service: `bentoml serve modelyard.bento.service:ImageClassifier` (or `modelyard serve`).

One class. The model is the one MODELYARD_MODEL_TAG names in the BentoML model store (BENTOML_HOME), loaded in the
background so that /livez answers at once and /readyz turns 200 only after a warm-up prediction was right. Two
batchable APIs share one adaptive-batching model call:

- `POST /predict`: multipart/form-data, one or more files in the field `images`;
- `POST /predict_base64`: JSON `{"images": ["<base64>", ...]}`.

Each answers a list with one entry per image: the top-k classes with probabilities and the model tag. Images are
decoded and checked while the request is parsed (pydantic validators), before batching, so one bad image gets its
own request a 400 that names it and never fails the other requests of a batch. The price: decoding runs on the
worker's event loop (BentoML validates there), so the input limits also bound how long one request can hold it.
That loop is what limits a worker, so on a GPU the service runs several (MODELYARD_WORKERS=auto, the default), each
replaying its model's forward pass from CUDA graphs (MODELYARD_CUDA_GRAPHS, on by default).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import bentoml
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml.exceptions import ServiceUnavailable
from pydantic import AfterValidator, BeforeValidator, ValidatorFunctionWrapHandler, WrapValidator
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile

from modelyard.bento.inputs import (
    DecodedImage,
    RejectedInputError,
    RejectReason,
    check_size,
    decode_base64,
    decode_image,
)
from modelyard.bento.metrics import service_metrics
from modelyard.bento.middleware import RequestGuard
from modelyard.bento.runtime import Classifier, ImagePrediction, ModelLoader, Readiness
from modelyard.bento.settings import (
    Batching,
    ServiceSettings,
    access_log_from_env,
    limits_from_env,
    prediction_tracing,
    workers_from_env,
)

# Read when the class is defined: BentoML sizes its batching dispatchers from the decorator.
BATCHING = Batching.from_env()
LIMITS = limits_from_env()
WORKERS = workers_from_env()
ACCESS_LOG = access_log_from_env()
FILE_FIELD = "images"
PREDICTION_ROUTES = {"/predict": "multipart/form-data", "/predict_base64": "application/json"}
# BentoML has loaded its configuration (BENTOML_CONFIG) by the time it imports the service, in every process.
TRACING = prediction_tracing(BentoMLContainer.config.tracing.exporter_type.get(), list(PREDICTION_ROUTES))
# Requests one worker takes at once; more get a 429. BentoML divides the service's max_concurrency among its workers,
# and a client's keep-alive connection stays with one worker, so the service's figure grows with the workers: with a
# fixed one, 8 workers took 8 each and answered a third of 64 clients' requests with 429 (bench/RESULTS.md).
MAX_CONCURRENCY_PER_WORKER = 64
READINESS = Readiness()


def count_rejection(reason: RejectReason) -> None:
    service_metrics(BATCHING.max_batch_size).reject(reason)


def _refuse(error: RejectedInputError) -> PydanticCustomError:
    """A rejection as the validation error BentoML turns into a 400; its `type` is the reason."""
    count_rejection(error.reason)
    return PydanticCustomError(error.reason.value, "{message}", {"message": error.message})


def _image_count(value: Any) -> Any:
    # Before the items are validated: a request with 10 000 images is refused without decoding one.
    if isinstance(value, list):
        if not value:
            raise _refuse(RejectedInputError(RejectReason.NO_IMAGES, f"send at least one image in {FILE_FIELD!r}"))
        if len(value) > LIMITS.max_images_per_request:
            message = f"{len(value)} images in one request; the limit is {LIMITS.max_images_per_request}"
            raise _refuse(RejectedInputError(RejectReason.TOO_MANY_IMAGES, message))
    return value


# BentoML 1.4 attaches the item validators of a str list twice (its annotation patching repeats them), so each
# validator passes an already decoded image through.


def _decode_upload(upload: Any, read_as_bentoml_does: ValidatorFunctionWrapHandler) -> DecodedImage:
    if isinstance(upload, DecodedImage):
        return upload
    try:
        if isinstance(upload, UploadFile):
            # What the multipart parser hands over, read where it lies. BentoML's own validator for a Path would
            # first write each file to a temporary file of its own: a fifth of the event loop's time with 16
            # images per request, in a profile (bench/RESULTS.md).
            if upload.size is not None:  # decode_image checks the bytes read too
                check_size(upload.size, LIMITS)
            upload.file.seek(0)
            return decode_image(upload.file.read(), LIMITS)
        path: Path = read_as_bentoml_does(upload)  # a path or bytes from a Python caller: BentoML's way
        check_size(path.stat().st_size, LIMITS)
        return decode_image(path.read_bytes(), LIMITS)
    except RejectedInputError as error:
        raise _refuse(error) from None


def _decode_base64_image(text: str | DecodedImage) -> DecodedImage:
    if isinstance(text, DecodedImage):
        return text
    try:
        return decode_image(decode_base64(text, LIMITS), LIMITS)
    except RejectedInputError as error:
        raise _refuse(error) from None


if TYPE_CHECKING:
    UploadedImages = list[DecodedImage]
    Base64Images = list[DecodedImage]
else:
    # What clients send (files; base64 strings), as BentoML documents it; what the API receives is DecodedImage.
    UploadedImages = Annotated[list[Annotated[Path, WrapValidator(_decode_upload)]], BeforeValidator(_image_count)]
    Base64Images = Annotated[list[Annotated[str, AfterValidator(_decode_base64_image)]], BeforeValidator(_image_count)]


@bentoml.service(
    name="modelyard-classifier",
    traffic={"timeout": 120, "max_concurrency": MAX_CONCURRENCY_PER_WORKER * WORKERS},
    workers=WORKERS,
    logging={"access": {"enabled": ACCESS_LOG}},
    **({"tracing": TRACING} if TRACING else {}),
)
class ImageClassifier:
    """Image classification with a model from the Modelyard trainer."""

    def __init__(self) -> None:
        self.settings = ServiceSettings.from_env()
        self.metrics = service_metrics(BATCHING.max_batch_size)
        self.classifier: Classifier | None = None
        self.loader = ModelLoader(self.settings, READINESS, self._serve)
        self.loader.start()
        # BentoML's API descriptor builds a new caller, inspect.signature included, at every lookup, and its app looks
        # an API up twice per request: 5% of a worker's event loop on the H200 (bench/RESULTS.md, 2026-12-02). It is a
        # non-data descriptor, so an attribute of the instance shadows it; the app calls only the caller's `.local`,
        # which is the same function each time. (Our own code never calls its APIs through BentoML's self-proxy.)
        for name in cast(Any, ImageClassifier).apis:
            setattr(self, name, getattr(self, name))

    def _serve(self, classifier: Classifier) -> None:
        self.classifier = classifier
        self.metrics.serving(classifier.tag)

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]  # BentoML's decorators are untyped
    def stop_loading(self) -> None:
        self.loader.stop()

    def __is_ready__(self) -> bool:
        return READINESS.get()[0]

    def _classify(self, images: list[DecodedImage]) -> list[ImagePrediction]:
        classifier = self.classifier
        if classifier is None:  # the middleware refuses requests first; this guards direct calls
            raise ServiceUnavailable("the model is not ready")
        predictions = classifier.predict([image.pixels for image in images], self.settings.top_k)
        self.metrics.predicted(classifier.tag, (p.top[0].class_name for p in predictions), len(images))
        return predictions

    @bentoml.api(  # type: ignore[untyped-decorator]
        route="/predict",
        batchable=True,
        max_batch_size=BATCHING.max_batch_size,
        max_latency_ms=BATCHING.max_latency_ms,
    )
    def predict(self, images: UploadedImages) -> list[ImagePrediction]:
        """Classify image files (PNG, JPEG, GIF, BMP, TIFF, WebP) sent as multipart/form-data in the field
        `images`, one or more per request. Answers one entry per image, in order."""
        return self._classify(images)

    @bentoml.api(  # type: ignore[untyped-decorator]
        route="/predict_base64",
        batchable=True,
        max_batch_size=BATCHING.max_batch_size,
        max_latency_ms=BATCHING.max_latency_ms,
    )
    def predict_base64(self, images: Base64Images) -> list[ImagePrediction]:
        """Classify base64-encoded image files sent as JSON `{"images": ["...", ...]}` (a `data:image/...;base64,`
        prefix is allowed). Answers one entry per image, in order."""
        return self._classify(images)


# @bentoml.service turned the class into a bentoml.Service; mypy still sees the class.
for _method in cast(Any, ImageClassifier).apis.values():
    # Without a media type, BentoML derives each answer's Content-Type from the output's JSON schema, generated again
    # for every response: a fifth of a worker's event loop in a profile (bench/RESULTS.md). The answer is JSON.
    _method.output_spec.media_type = "application/json"

cast(Any, ImageClassifier).add_asgi_middleware(
    RequestGuard,
    routes=PREDICTION_ROUTES,
    file_field=FILE_FIELD,
    limits=LIMITS,
    readiness=READINESS,
    count_rejection=count_rejection,
)
