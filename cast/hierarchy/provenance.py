"""What produced a hierarchy: model, weights, grouping (superpixels or k-means) and input geometry.

One typed record, built by `Segmenter` and nowhere else, carried by every `Hierarchy`, written to every
export as `provenance.json` (`to_dict`, the same keys as always) and read back by `from_dict`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import HierarchyError


@dataclass(frozen=True)
class InputGeometry:
    """The square model input: its size, how it was framed, and where it lies in the original image."""

    size: int
    mode: str  # "center_crop" (the official pipeline) or "full_frame"
    crop_box_xyxy: tuple[int, int, int, int]  # in original-image pixels
    original_hw: tuple[int, int]
    parity_with_official: bool  # InputConfig.is_parity: the official Resize + CenterCrop at 224

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "mode": self.mode, "parity_with_official": self.parity_with_official,
                "crop_box_xyxy": list(self.crop_box_xyxy), "original_hw": list(self.original_hw)}


@dataclass(frozen=True)
class Grouping:
    """How level 0 was made: superpixels (SEEDS / SLIC with their settings) or the ViT baseline's k-means."""

    method: str  # "seeds", "slic" or "vit_kmeans"
    count: int  # groups at level 0
    description: str
    settings: Mapping[str, Any] = field(default_factory=dict)  # SuperpixelConfig.to_dict(), or {"kmeans_seed": s}

    def to_dict(self) -> dict[str, Any]:
        return {**self.settings, "method": self.method, "count": self.count, "description": self.description}


@dataclass(frozen=True)
class SegmentationProvenance:
    """Everything needed to say how a hierarchy was made (the app's honesty line, exports)."""

    model_variant: str
    checkpoint: str  # zoo name, file name, "none (random init)" or "not recorded"
    trained: bool | None
    layout: str | None
    grouping: Grouping
    input: InputGeometry
    source_name: str | None = None  # the image's name, for messages and export stems
    source: str | None = None  # the image as read, in words (format, size, conversion)
    decoded_scale: int = 1  # 2, 4, 8: decoded reduced (JPEG DCT scaling)

    @property
    def is_vit(self) -> bool:
        return self.grouping.method == "vit_kmeans"

    def to_dict(self) -> dict[str, Any]:
        """JSON form (the keys of `provenance.json`)."""
        return {
            "checkpoint": self.checkpoint, "layout": self.layout, "trained": self.trained,
            "model_variant": self.model_variant, "superpixels": self.grouping.to_dict(), "input": self.input.to_dict(),
            "source_name": self.source_name, "source": self.source, "decoded_scale": self.decoded_scale,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SegmentationProvenance":
        """Inverse of :meth:`to_dict`; HierarchyError when a required part is missing."""
        try:
            grouping = dict(data["superpixels"])
            inp = data["input"]
            return cls(
                model_variant=str(data["model_variant"]),
                checkpoint=str(data.get("checkpoint") or "not recorded"),
                trained=data.get("trained"),
                layout=data.get("layout"),
                grouping=Grouping(method=str(grouping.pop("method")), count=int(grouping.pop("count")),
                                  description=str(grouping.pop("description", "")), settings=grouping),
                input=InputGeometry(size=int(inp["size"]), mode=str(inp["mode"]),
                                    crop_box_xyxy=tuple(int(v) for v in inp["crop_box_xyxy"]),  # type: ignore[arg-type]
                                    original_hw=tuple(int(v) for v in inp["original_hw"]),  # type: ignore[arg-type]
                                    parity_with_official=bool(inp["parity_with_official"])),
                source_name=data.get("source_name"),
                source=data.get("source"),
                decoded_scale=int(data.get("decoded_scale") or 1),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise HierarchyError(f"incomplete provenance record (missing or bad {err})") from err
