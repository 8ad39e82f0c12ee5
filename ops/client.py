"""Python client for the served detector; reads TorchServe's token file automatically.

    from ops.client import DetectorClient
    print(DetectorClient().predict("cat.jpg"))
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Any

import requests

from detector.paths import REPO

KEY_FILE_ENV = "AI_DETECTOR_KEY_FILE"
# Answers that say "try again", not "your request is wrong": a gateway/overload status, or
# TorchServe's "Worker died." for the requests of a batch whose worker process was lost
# (500, 507 seen in 0.12 for a SIGKILLed worker, or 413 when TorchServe reads exit code 137 as OOM).
RETRIABLE_STATUSES = (502, 503, 504)
WORKER_DIED_STATUSES = (500, 507, 413)
REFUSAL_STATUSES = (400, 413, 415)   # the handler's answers to an image it cannot classify
RETRIES = 4          # tries before the retriable answer goes to the caller
BACKOFF_S = 0.25     # the first retry's delay; each later one doubles it (0.25, 0.5, 1, 2 s)


def backoff_delay(attempt: int, backoff: float = BACKOFF_S) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): ``backoff * 2**attempt`` with equal jitter (half of
    it fixed, half drawn), so that clients turned away by the same full queue do not all come back together."""
    delay = backoff * 2 ** attempt
    return delay / 2 + random.uniform(0, delay / 2)


def is_retriable(status: int, body: str) -> bool:
    """True for answers that a retry may turn into a prediction (see RETRIABLE_STATUSES)."""
    return status in RETRIABLE_STATUSES or (status in WORKER_DIED_STATUSES and "Worker died" in body)


class ImageRefused(requests.HTTPError):
    """The server refused an image it cannot classify: its JSON error's status (400, 413, 415), type and message.
    Raised alike over HTTP (``DetectorClient``) and over gRPC (``ops.oip``), where TorchServe answers such an image
    with status OK and the error in the body."""

    def __init__(self, status: int, kind: str, message: str, response: requests.Response | None = None) -> None:
        super().__init__(f"{status} {kind}: {message}", response=response)
        self.status = status
        self.kind = kind
        self.message = message

    @classmethod
    def of(cls, body: Any, response: requests.Response | None = None) -> "ImageRefused | None":
        """The refusal in the handler's JSON error body ({"code", "type", "message"}), else None. TorchServe's own
        errors have the same fields, but their type names a Java exception (``InvalidKeyException`` for a wrong key,
        also a 400; ``ServiceUnavailableException``, ``InternalServerException`` for "Worker died."): no refusal."""
        if (isinstance(body, dict) and {"code", "type", "message"} <= body.keys() and body["code"] in REFUSAL_STATUSES
                and not str(body["type"]).endswith("Exception")):
            return cls(int(body["code"]), str(body["type"]), str(body["message"]), response)
        return None


def raise_for_answer(response: requests.Response) -> None:
    """``ImageRefused`` for the handler's refusals, ``requests.HTTPError`` for the other failures."""
    if response.status_code >= 400:
        try:
            refused = ImageRefused.of(response.json(), response)
        except ValueError:   # no JSON body (TorchServe's own 413 for a body above max_request_size)
            refused = None
        if refused is not None:
            raise refused
    response.raise_for_status()


def default_key_file() -> Path:
    """``$AI_DETECTOR_KEY_FILE``, else ``run/key_file.json`` where ``make serve`` starts TorchServe."""
    return Path(os.environ.get(KEY_FILE_ENV, REPO / "run" / "key_file.json"))


def read_keys(key_file: Path | None = None) -> dict[str, str]:
    """{'inference': key, 'management': key, 'API': key} from TorchServe's key_file.json."""
    path = Path(key_file or default_key_file())
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no TorchServe key file at {path}: is the server running (make serve)? "
                                f"Set {KEY_FILE_ENV} to point elsewhere.") from exc
    return {name: entry["key"] for name, entry in raw.items()}


class DetectorClient:
    """Inference and management calls with the bearer tokens filled in.

    Predictions are retried ``retries`` times with jittered exponential backoff (``backoff_delay``)
    on retriable answers and on connection errors, so a worker restart costs latency, not errors.
    ``authorization=False`` is for servers whose token check is off because a gateway authenticates
    (the Kubernetes and KServe configurations in deploy/).
    """

    def __init__(self, inference_url: str = "http://127.0.0.1:8080", management_url: str = "http://127.0.0.1:8081",
                 key_file: Path | None = None, model: str = "ai_detector", timeout: float = 60.0,
                 retries: int = RETRIES, backoff: float = BACKOFF_S, authorization: bool = True) -> None:
        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.key_file = key_file
        self.model = model
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.retried = 0  # retries spent so far (reported by the soak test)
        self.authorization = authorization
        self.session = requests.Session()

    def _headers(self, kind: str) -> dict[str, str]:
        if not self.authorization:
            return {}
        return {"Authorization": f"Bearer {read_keys(self.key_file)[kind]}"}

    def _model_path(self, model: str | None, version: str | None) -> str:
        return f"{model or self.model}/{version}" if version else (model or self.model)

    def predict_response(self, image: bytes | str | Path, model: str | None = None,
                         version: str | None = None, endpoint: str = "predictions") -> requests.Response:
        """POST the raw image bytes (to ``version``, else the default version), retrying retriable failures;
        ``endpoint="explanations"`` asks for the Grad-CAM explanation as well."""
        data = image if isinstance(image, bytes) else Path(image).read_bytes()
        url = f"{self.inference_url}/{endpoint}/{self._model_path(model, version)}"

        def post() -> requests.Response:
            return self.session.post(url, data=data, headers=self._headers("inference"), timeout=self.timeout)

        for attempt in range(self.retries):
            try:
                response = post()
                if not is_retriable(response.status_code, response.text):
                    return response
            except requests.ConnectionError:
                pass
            self.retried += 1
            time.sleep(backoff_delay(attempt, self.backoff))
        return post()  # the last attempt: its answer, or its exception, goes to the caller

    def predict(self, image: bytes | str | Path, model: str | None = None, version: str | None = None) -> dict[str, Any]:
        """The prediction JSON; raises ``ImageRefused`` for an image the server refuses, ``requests.HTTPError``
        for the other failures."""
        response = self.predict_response(image, model, version)
        raise_for_answer(response)
        return response.json()

    def explain(self, image: bytes | str | Path, model: str | None = None, version: str | None = None) -> dict[str, Any]:
        """The prediction plus ``gradcam`` (7x7 map of the predicted class and a PNG overlay, base64)."""
        response = self.predict_response(image, model, version, endpoint="explanations")
        raise_for_answer(response)
        return response.json()

    def management(self, method: str, path: str, **params: Any) -> requests.Response:
        response = self.session.request(method, f"{self.management_url}/{path.lstrip('/')}", params=params,
                                        headers=self._headers("management"), timeout=self.timeout)
        response.raise_for_status()
        return response

    def list_models(self) -> list[dict[str, Any]]:
        return self.management("GET", "models", limit=1000).json()["models"]

    def describe(self, model: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        """One entry per described version (``version="all"`` lists every version) with its workers."""
        return self.management("GET", f"models/{self._model_path(model, version)}").json()

    def scale_workers(self, min_worker: int, max_worker: int | None = None, model: str | None = None,
                      version: str | None = None) -> dict[str, Any]:
        """Synchronously scale workers (returns once they are up)."""
        return self.management("PUT", f"models/{self._model_path(model, version)}", min_worker=min_worker,
                               max_worker=max_worker or min_worker, synchronous="true").json()

    def register(self, archive: str, batch_size: int = 8, max_batch_delay: int = 5, initial_workers: int = 1,
                 response_timeout: int = 60) -> dict[str, Any]:
        """Register an archive of the model store (needs ``enable_model_api=true``), synchronously."""
        return self.management("POST", "models", url=archive, batch_size=batch_size, max_batch_delay=max_batch_delay,
                               initial_workers=initial_workers, response_timeout=response_timeout,
                               synchronous="true").json()

    def set_default(self, version: str, model: str | None = None) -> dict[str, Any]:
        """Route unversioned requests to ``version`` (switching, or rolling back)."""
        return self.management("PUT", f"models/{model or self.model}/{version}/set-default").json()

    def unregister(self, version: str | None = None, model: str | None = None) -> dict[str, Any]:
        return self.management("DELETE", f"models/{self._model_path(model, version)}").json()
