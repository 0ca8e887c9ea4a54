"""The capture's settings: which models, what share, where, how much and for how long.

Off by default (no model named). A model's share is sampled sticky by routing key
(`gateway.capture.sampler`), so a user's requests are all kept or none.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class CaptureSettings(BaseModel):
    """`capture:` in the gateway YAML (`dualserve up --capture MODEL=SHARE`).

    An unknown field is an error naming it, as at the top level.
    """

    model_config = ConfigDict(extra="forbid")

    models: dict[str, float] = Field(
        default_factory=dict,
        description="model -> share of its requests captured, 0..1 (none: capture is off)",
    )
    dir: Path | None = Field(
        None, description="where the Parquet files go; None = `capture/` beside the config file"
    )
    queue_size: int = Field(
        2000, ge=1, description="records waiting for the writer; full = dropped and counted"
    )
    queue_max_bytes: int = Field(
        64 * 1024 * 1024, ge=1, description="input bytes waiting at most; past it = dropped"
    )
    max_request_bytes: int = Field(
        1024 * 1024, ge=1, description="requests with larger input tensors are not captured"
    )
    max_file_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="a file is closed and a new one begun past this"
    )
    max_file_age_s: float = Field(300.0, gt=0, description="a file is closed after this long")
    retention_hours: float = Field(
        168.0, gt=0, description="closed files older than this are deleted"
    )
    max_total_bytes: int | None = Field(
        1024 * 1024 * 1024, ge=1024, description="the oldest closed files go past this"
    )
    flush_interval_s: float = Field(
        0.5, gt=0, description="the writer thread wakes at least this often"
    )
    cloudevents_url: str | None = Field(
        None, description="also POST each capture as a CloudEvent (binary mode) here; None = off"
    )
    cloudevents_source: str = Field("dualserve/gateway", description="the events' ce-source")
    cloudevents_timeout_s: float = Field(2.0, gt=0, description="per CloudEvent POST")

    @field_validator("models")
    @classmethod
    def _shares_are_shares(cls, models: dict[str, float]) -> dict[str, float]:
        for model, share in models.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"capture.models.{model}: the share {share} is not in [0, 1]")
        return models

    @property
    def enabled(self) -> bool:
        return any(share > 0 for share in self.models.values())


def capture_dir(settings: CaptureSettings, config_file: Path | None) -> Path | None:
    """The configured folder, else `capture/` beside the config file, else None."""
    if settings.dir is not None:
        return Path(settings.dir)
    return None if config_file is None else Path(config_file).resolve().parent / "capture"
