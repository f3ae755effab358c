"""Lightning's MLFlowLogger, plus what a generative run needs: images with steps,
text artifacts, artifacts stored beside a local SQLite store, and a reachability
check before any training starts."""

import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.utilities import rank_zero_only


class TrackingUnreachable(RuntimeError):
    """The tracking store can't be reached or created; raised before training starts."""


class MLflowLogger(MLFlowLogger):
    def __init__(self, tracking_uri: str, experiment_name: str, artifact_location: str | None = None, **kwargs):
        if artifact_location is None and tracking_uri.startswith("sqlite:///"):
            # MLflow's default would be ./mlruns under whatever directory the process runs in.
            artifact_location = str(_sqlite_path(tracking_uri).parent / "mlartifacts" / experiment_name)
        super().__init__(
            experiment_name=experiment_name,
            tracking_uri=tracking_uri,
            artifact_location=artifact_location,
            **kwargs,
        )

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    @property
    def experiment_name(self) -> str:
        return self._experiment_name

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Fail fast with a message naming the URI, instead of MLflow's minutes of retries."""
        uri = self._tracking_uri
        fix = "start the server, or point logger.mlflow.tracking_uri (or MLFLOW_TRACKING_URI) at a reachable store"
        if uri.startswith(("http://", "https://")):
            try:
                urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s).close()
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                raise TrackingUnreachable(f"MLflow tracking server {uri} is unreachable ({reason}): {fix}") from None
        elif uri.startswith("sqlite:///"):
            folder = _sqlite_path(uri).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise TrackingUnreachable(f"cannot create the MLflow store {uri} ({error}): {fix}") from None
        try:
            _ = self.experiment  # creates the store, the experiment and the run
        except Exception as error:
            raise TrackingUnreachable(f"MLflow tracking store {uri} failed: {_first_line(error)}: {fix}") from None

    @rank_zero_only
    def log_image(self, key: str, images: list, step: int | None = None) -> None:
        """Log images under ``key`` at ``step`` (MLflow's UI shows them on a step slider)."""
        for index, image in enumerate(images):
            name = key if len(images) == 1 else f"{key}_{index}"
            self.experiment.log_image(self.run_id, _as_array(image), key=name, step=step or 0)

    @rank_zero_only
    def set_tags(self, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.experiment.set_tag(self.run_id, key, value)

    @rank_zero_only
    def log_text_artifact(self, text: str, artifact_file: str) -> None:
        """Save ``text`` as the artifact ``artifact_file`` (not Lightning's WandbLogger.log_text table)."""
        self.experiment.log_text(self.run_id, text, artifact_file)

    @rank_zero_only
    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        self.experiment.log_artifact(self.run_id, local_path, artifact_path)

    def ui_command(self) -> str:
        store = self._tracking_uri
        if store.startswith(("http://", "https://")):
            return f"open {store}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"mlflow ui --backend-store-uri {store} --host 127.0.0.1 --port 5000"


def _sqlite_path(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///")).expanduser().resolve()


def _as_array(image) -> np.ndarray:
    return image if isinstance(image, np.ndarray) else np.asarray(image)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
