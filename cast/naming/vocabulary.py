"""What segments may be called: objects, each with optional parts (spec §11.2, §11.6).

A `Vocabulary` is built from a preset (`partimagenet`, `coco`, `imagenet`) or from text such as
`cat: head, ear, leg; car: wheel, door`. Part names are full names: "cat head" for typed text, the
official "Quadruped Head" for PartImageNet (whose part names already carry the object).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from ..errors import VocabularyError

BACKGROUND = "Background"  # the notebook appends it to the object classes (spec §11.2)
PROMPT = "a photo of a {}"  # one prompt per class, no ensembling (spec §11.2)
MAX_NAME_LENGTH = 100


@dataclass(frozen=True)
class Vocabulary:
    """Object names in order, and per object its full part names in order (possibly none).

    Object class indices are 0..len(objects)-1 then `background` (the last index); part class indices
    are the parts grouped by object in object order, then the background part (the last index).
    """

    objects: tuple[str, ...]
    parts: tuple[tuple[str, ...], ...]
    name: str = "custom"
    background: str = BACKGROUND

    def __post_init__(self) -> None:
        if not self.objects:
            raise VocabularyError("the vocabulary is empty: give at least one object name")
        if len(self.parts) != len(self.objects):
            raise VocabularyError(f"{len(self.objects)} objects but {len(self.parts)} part lists")

    @property
    def object_classes(self) -> tuple[str, ...]:
        """The object vocabulary of §11.2: the objects, then the background (PartImageNet: 11 + 1)."""
        return (*self.objects, self.background)

    @property
    def part_classes(self) -> tuple[str, ...]:
        """Every part, grouped by object in object order (PartImageNet: the official 40)."""
        return tuple(p for group in self.parts for p in group)

    @property
    def has_parts(self) -> bool:
        return any(self.parts)

    def part_offset(self, object_index: int) -> int:
        """Global index of object `object_index`'s first part (the parts of all earlier objects, §11.4)."""
        return sum(len(group) for group in self.parts[:object_index])

    @property
    def background_part(self) -> int:
        """The part class of background pixels and of segments whose object is background (§11.4)."""
        return len(self.part_classes)

    @classmethod
    def from_class_lists(cls, objects: list[str] | tuple[str, ...], part_names: list[str] | tuple[str, ...],
                         *, name: str = "custom") -> "Vocabulary":
        """Objects and a flat part list grouped as the notebook does: object j's parts are the part names
        that contain its name, in their order (`[c for c in classname_f if sup_c in c]`, spec §11.2)."""
        groups = tuple(tuple(p for p in part_names if o in p) for o in objects)
        orphans = [p for p in part_names if not any(o in p for o in objects)]
        if orphans:
            raise VocabularyError(f"part names {', '.join(orphans[:5])} contain no object name, so no object owns them")
        return cls(tuple(objects), groups, name=name)

    def describe(self) -> str:
        parts = f", {len(self.part_classes)} parts" if self.has_parts else ""
        return f"{self.name} ({len(self.objects)} objects{parts})"

    def to_text(self) -> str:
        """The typed form (`obj: part, part; obj`), with the part names as stored."""
        return "; ".join(f"{o}: {', '.join(p)}" if p else o for o, p in zip(self.objects, self.parts))


# ---------------------------------------------------------------- presets
# PartImageNet: 11 supercategories and 40 parts in the official annotation order (spec §7.2, §11.2).
_PARTIMAGENET = (
    ("Quadruped", ("Head", "Body", "Foot", "Tail")),
    ("Biped", ("Head", "Body", "Hand", "Foot", "Tail")),
    ("Fish", ("Head", "Body", "Fin", "Tail")),
    ("Bird", ("Head", "Body", "Wing", "Foot", "Tail")),
    ("Snake", ("Head", "Body")),
    ("Reptile", ("Head", "Body", "Foot", "Tail")),
    ("Car", ("Body", "Tier", "Side Mirror")),  # "Tier" (sic) is the official name
    ("Bicycle", ("Body", "Head", "Seat", "Tier")),
    ("Boat", ("Body", "Sail")),
    ("Aeroplane", ("Head", "Body", "Engine", "Wing", "Tail")),
    ("Bottle", ("Mouth", "Body")),
)

COCO_OBJECTS = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip


def partimagenet() -> Vocabulary:
    """PartImageNet: 11 objects, 40 parts named as in the annotations ("Quadruped Head", ...)."""
    return Vocabulary(tuple(o for o, _ in _PARTIMAGENET),
                      tuple(tuple(f"{o} {p}" for p in parts) for o, parts in _PARTIMAGENET), name="partimagenet")


def coco() -> Vocabulary:
    """COCO's 80 object categories, no parts."""
    return Vocabulary(COCO_OBJECTS, ((),) * len(COCO_OBJECTS), name="coco")


@lru_cache(maxsize=1)
def imagenet() -> Vocabulary:
    """ImageNet-1k's 1000 classes (the first WordNet lemma of each, class-index order), no parts."""
    text = resources.files("cast").joinpath("data/imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.split(",")[0].strip() for line in text.splitlines() if line.strip())
    return Vocabulary(names, ((),) * len(names), name="imagenet")


PRESETS = {"partimagenet": partimagenet, "coco": coco, "imagenet": imagenet}


# ---------------------------------------------------------------- typed vocabularies
@dataclass(frozen=True)
class VocabularyLimits:
    """Caps on a typed vocabulary (the hosted app sets smaller ones)."""

    max_text_length: int = 20_000
    max_objects: int = 1000
    max_parts: int = 2000


_NAME = re.compile(r"^[^\x00-\x1f:;]+$")


def _clean(name: str, where: str) -> str:
    name = " ".join(name.split())
    if not name:
        raise VocabularyError(f"empty name in {where}")
    if len(name) > MAX_NAME_LENGTH:
        raise VocabularyError(f"the name {name[:30]!r}... in {where} is longer than {MAX_NAME_LENGTH} characters")
    if not _NAME.match(name):
        raise VocabularyError(f"the name {name!r} in {where} contains a control character")
    return name


def parse_vocabulary(text: str, *, limits: VocabularyLimits = VocabularyLimits()) -> Vocabulary:
    """Parse `cat: head, ear; car: wheel, door; tree`: objects separated by `;` (or new lines), each with
    optional `:` and comma-separated parts. Part names become "cat head", ... unless they already
    contain the object's name. A line of commas without `:` lists several objects (`cat, dog, car`)."""
    if not isinstance(text, str):
        raise VocabularyError("the vocabulary must be text such as 'cat: head, ear; car: wheel'")
    if len(text) > limits.max_text_length:
        raise VocabularyError(f"the vocabulary text has {len(text)} characters; at most {limits.max_text_length} are allowed")
    objects: list[str] = []
    parts: list[tuple[str, ...]] = []
    entries = [e for e in re.split(r"[;\n]", text) if e.strip()]
    if not entries:
        raise VocabularyError("the vocabulary is empty: type object names such as 'cat: head, ear; car: wheel'")
    for number, entry in enumerate(entries, 1):
        where = f"entry {number} ({entry.strip()[:40]!r})"
        if entry.count(":") > 1:
            raise VocabularyError(f"{where} has more than one ':'; separate objects with ';'")
        if ":" in entry:
            head, tail = entry.split(":")
            obj = _clean(head, where)
            names = [_clean(p, where) for p in tail.split(",") if p.strip()]
            if not names:
                raise VocabularyError(f"{where} has a ':' but no part names after it")
            group = tuple(p if obj.lower() in p.lower() else f"{obj} {p}" for p in names)
            objects.append(obj)
            parts.append(group)
        else:
            for name in entry.split(","):
                if name.strip():
                    objects.append(_clean(name, where))
                    parts.append(())
    lowered = [o.lower() for o in objects]
    duplicates = sorted({o for o in objects if lowered.count(o.lower()) > 1})
    if duplicates:
        raise VocabularyError(f"object names must be distinct; repeated: {', '.join(duplicates)}")
    if BACKGROUND.lower() in lowered:
        raise VocabularyError(f"'{BACKGROUND}' is added to every vocabulary; leave it out")
    flat = [p.lower() for group in parts for p in group]
    repeated = sorted({p for p in flat if flat.count(p) > 1})
    if repeated:
        raise VocabularyError(f"part names must be distinct; repeated: {', '.join(repeated)}")
    if len(objects) > limits.max_objects:
        raise VocabularyError(f"the vocabulary has {len(objects)} objects; at most {limits.max_objects} are allowed")
    if len(flat) > limits.max_parts:
        raise VocabularyError(f"the vocabulary has {len(flat)} parts; at most {limits.max_parts} are allowed")
    return Vocabulary(tuple(objects), tuple(parts))


def resolve_vocabulary(spec: str | Vocabulary, *, limits: VocabularyLimits = VocabularyLimits()) -> Vocabulary:
    """A Vocabulary, a preset name (`partimagenet`, `coco`, `imagenet`) or typed text.

    `limits` apply to typed text and given Vocabulary objects; the presets are fixed lists whose prompts
    are encoded once per namer and kept, so they are always allowed (ImageNet's 1000 included)."""
    if isinstance(spec, str) and spec.strip().lower() in PRESETS:
        return PRESETS[spec.strip().lower()]()
    if not isinstance(spec, Vocabulary):
        return parse_vocabulary(spec, limits=limits)
    if len(spec.objects) > limits.max_objects or len(spec.part_classes) > limits.max_parts:
        raise VocabularyError(f"the {spec.describe()} vocabulary is larger than allowed here "
                              f"({limits.max_objects} objects, {limits.max_parts} parts)")
    return spec
