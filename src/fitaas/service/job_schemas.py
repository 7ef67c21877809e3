"""The job resource's schemas: what a client sends to submit a job and what it gets back
(the client's :class:`fitaas.client.Job` is tested against :class:`JobPublic`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CombineSpec",
    "JobCreate",
    "JobPublic",
    "PalletRef",
]


_DIGEST = r"^[0-9a-f]{64}$"


class PalletRef(BaseModel):
    """One named pallet of a sweep or combination (digests of uploaded documents)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.+/-]{1,100}$", description="unique in the job")
    workspace: str = Field(pattern=_DIGEST, description="digest from POST /workspaces")
    patchset: str | None = Field(None, pattern=_DIGEST, description="from POST /patchsets")


class CombineSpec(BaseModel):
    """How a combination's pallets combine (as ``fitaas scan --combine``)."""

    model_config = ConfigDict(extra="forbid")

    join: Literal["none", "inner", "outer", "left outer", "right outer"] = "none"
    match: Literal["names", "values"] = "names"


class JobCreate(BaseModel):
    """A job request. Unknown fields are refused.

    A scan of one pallet gives ``workspace`` (and ``patchset``); a sweep gives ``pallets``;
    a combination ``pallets`` and ``combine``; a theory scan ``workspace`` and ``models``.
    """

    model_config = ConfigDict(extra="forbid")

    workspace: str | None = Field(None, pattern=_DIGEST, description="digest from POST /workspaces")
    pallets: list[PalletRef] | None = Field(
        None, min_length=1, max_length=200, description="a sweep's or combination's pallets"
    )
    combine: CombineSpec | None = Field(None, description="combine the pallets: one scan")
    models: str | None = Field(
        None, pattern=_DIGEST, description="theory models: digest from POST /models"
    )
    labels: list[str] | None = Field(None, description="names of the models' values")
    patchset: str | dict[str, Any] | None = Field(
        None, description="digest from POST /patchsets, or the patchset itself"
    )
    patches: list[str] | None = Field(
        None, description="a subset of patch names (ranking, nll_scan: the one point)"
    )
    task: Literal["hypotest", "upper_limit", "fit", "ranking", "nll_scan"] = "hypotest"
    options: dict[str, Any] = Field(default_factory=dict, description="InferenceOptions fields")
    parameter: str | None = Field(
        None, description="ranking: the POI (default the model's); nll_scan: the parameter"
    )
    grid: tuple[float, float, int] | None = Field(
        None, description="nll_scan: [low, high, n] (default 21 values over the bounds)"
    )
    endpoint: str | None = Field(None, description="default: local")
    group: str | None = Field(None, description="one of your groups to share the job with")


class JobPublic(BaseModel):
    """What a job's owner (and its group) sees of it."""

    id: str
    owner: str
    endpoint: str
    group: str | None
    task: str
    state: Literal["queued", "running", "done", "failed", "cancelled"]
    total: int
    done: int
    failed: int
    error: str | None
    workspace: str
    patchset: str | None
    patches: list[str] | None
    options: dict[str, Any]
    params: dict[str, Any] | None = Field(None, description="ranking/nll_scan parameters")
    inputs: dict[str, Any] | None = Field(
        None, description="a sweep's or combination's pallets, a theory scan's models"
    )
    created: float
    started: float | None
    finished: float | None
    elapsed: float | None = Field(description="seconds from start to finish (or to now)")
