"""Naming segments with CLIP (spec §11): fidelity to the official notebook on every image of a reference
folder ($CAST_NAMING_DIR, default the compact copy tests/data/segment_naming), then the library's own
behaviour (vocabularies, CLIP choice and refusal, batching, caches, hierarchies).

The reference folder holds a tiny open_clip model with random weights, so everything runs offline."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from reference import load_naming_reference, naming_dir, parity_dir, tiny_model

from cast.errors import ClipModelError, VocabularyError
from cast.evaluation import class_miou
from cast.naming import (
    PROMPT,
    ClipModelSpec,
    SegmentNamer,
    Vocabulary,
    VocabularyLimits,
    clip_spec,
    coco,
    encode_segments,
    frame_image,
    frame_labels,
    imagenet,
    load_clip,
    parse_vocabulary,
    partimagenet,
    resolve_vocabulary,
)
from cast.segmenter import Segmenter


# ----------------------------------------------------------------------------- the reference folder
def _folder() -> Path:
    return naming_dir()


def _manifest() -> dict:
    return json.loads((_folder() / "manifest.json").read_text())


def _images() -> list[dict]:
    """The images of the folder: the manifest's entries whose file is in images/ (a subset folder may drop some)."""
    folder = _folder()
    if not (folder / "manifest.json").is_file():
        return []
    return [im for im in _manifest()["images"] if (folder / "images" / im["file"]).is_file()]


IMAGES = _images()
IMAGE_IDS = [im["file"] for im in IMAGES] or ["no-images"]


@pytest.fixture(scope="module")
def folder() -> Path:
    path = _folder()
    if not IMAGES:
        pytest.fail(f"segment-naming folder {path} is missing or holds no listed image (CAST_NAMING_DIR)")
    return path


@pytest.fixture(scope="module")
def reference(folder: Path) -> dict[str, torch.Tensor]:
    return load_naming_reference(folder)


@pytest.fixture(scope="module")
def clip(folder: Path):
    return load_clip(f"local-dir:{folder / 'clip_tiny'}")


@pytest.fixture(scope="module")
def vocabulary(folder: Path) -> Vocabulary:
    manifest = _manifest()
    return Vocabulary.from_class_lists(manifest["object_classes"], manifest["part_classes"])


@pytest.fixture(scope="module")
def namer(clip) -> SegmentNamer:
    return SegmentNamer(clip)


@pytest.fixture(params=IMAGES or [None], ids=IMAGE_IDS)
def image(request, folder: Path) -> tuple[dict, np.ndarray]:
    entry = request.param  # None only when the folder has no image: `folder` has failed already
    return entry, np.asarray(Image.open(folder / "images" / entry["file"]).convert("RGB"))


# ----------------------------------------------------------------------------- fidelity (exact)
def test_preprocessing_reproduces_the_clip_input(image, reference, clip) -> None:
    entry, rgb = image
    framed = frame_image(clip, rgb)
    assert rgb.shape[:2] == tuple(entry["size"][::-1])
    assert torch.allclose(framed.pixels, reference[f"image_{entry['index']}"], atol=1e-5, rtol=0)


def test_text_features_match(reference, clip, namer, vocabulary) -> None:
    manifest = _manifest()
    assert manifest["prompt"] == PROMPT
    assert list(vocabulary.object_classes) == manifest["object_vocabulary"]
    assert torch.equal(clip.tokenizer([PROMPT.format(n) for n in vocabulary.object_classes]), reference["tokens_c"])
    text = namer.text_features(vocabulary)
    assert torch.allclose(text.objects, reference["text_features_c"], atol=1e-5, rtol=0)
    for j, features in enumerate(text.parts):
        assert torch.allclose(features, reference[f"text_features_f_{j}"], atol=1e-5, rtol=0), vocabulary.objects[j]


def test_segment_features_and_predictions_match(image, reference, clip, vocabulary) -> None:
    entry, rgb = image
    k = entry["index"]
    namer = SegmentNamer(clip, batch_size=4)  # several batches, one partly filled
    names = namer.name_maps(frame_image(clip, rgb), reference[f"mask_c_{k}"], vocabulary, reference[f"mask_f_{k}"])
    for features, key in ((names.object_features, f"image_features_c_{k}"), (names.part_features, f"image_features_f_{k}")):
        expected = reference[key]
        assert set(features.segments) <= set(range(len(expected))) and features.segments
        assert torch.allclose(features.features, expected[list(features.segments)], atol=1e-4, rtol=0)
    assert len(names.object_features.segments) == entry["segments_c"]
    assert len(names.part_features.segments) == entry["segments_f"]
    np.testing.assert_array_equal(names.object_classes, reference[f"pred_c_{k}"].numpy())
    np.testing.assert_array_equal(names.part_classes, reference[f"pred_f_{k}"].numpy())
    assert sorted(np.unique(names.object_classes).tolist()) == entry["pred_c_classes"]
    assert sorted(np.unique(names.part_classes).tolist()) == entry["pred_f_classes"]


def test_per_image_scores_match_torchmetrics_reference(image, reference, clip, vocabulary) -> None:
    entry, rgb = image
    k = entry["index"]
    names = SegmentNamer(clip).name_maps(frame_image(clip, rgb), reference[f"mask_c_{k}"], vocabulary,
                                         reference[f"mask_f_{k}"])  # fmt: skip
    objects = class_miou(names.object_classes, reference[f"gt_c_{k}"].numpy(), len(vocabulary.object_classes))
    parts = class_miou(names.part_classes, reference[f"gt_f_{k}"].numpy(), vocabulary.background_part + 1)
    assert abs(objects - entry["jaccard_object"]) <= 1e-6
    assert abs(parts - entry["jaccard_part"]) <= 1e-6


def test_batched_encoding_equals_one_at_a_time(image, reference, clip) -> None:
    entry, rgb = image
    framed = frame_image(clip, rgb)
    labels = reference[f"mask_f_{entry['index']}"]
    batched = encode_segments(clip, framed, labels, batch_size=64)
    single = encode_segments(clip, framed, labels, batch_size=1)
    assert batched.segments == single.segments
    assert torch.allclose(batched.features, single.features, atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- vocabularies
def test_presets_in_official_order() -> None:
    pin = partimagenet()
    assert len(pin.objects) == 11 and len(pin.part_classes) == 40
    assert pin.object_classes[-1] == "Background" and pin.part_classes[:2] == ("Quadruped Head", "Quadruped Body")
    assert pin.parts[6] == ("Car Body", "Car Tier", "Car Side Mirror") and pin.background_part == 40
    assert pin.part_offset(3) == 13  # Quadruped 4 + Biped 5 + Fish 4 parts before Bird
    assert Vocabulary.from_class_lists(pin.objects, pin.part_classes) == Vocabulary(pin.objects, pin.parts)
    assert len(coco().objects) == 80 and coco().objects[0] == "person" and not coco().has_parts
    assert len(imagenet().objects) == 1000 and imagenet().objects[0] == "tench"
    if IMAGES and len(_manifest()["object_classes"]) == 11:
        assert list(pin.objects) == _manifest()["object_classes"] and list(pin.part_classes) == _manifest()["part_classes"]


def test_typed_vocabulary() -> None:
    vocab = parse_vocabulary("cat: head, ear, leg, tail; car: wheel, door, window\n tree")
    assert vocab.objects == ("cat", "car", "tree")
    assert vocab.parts[0] == ("cat head", "cat ear", "cat leg", "cat tail") and vocab.parts[2] == ()
    assert vocab.part_offset(1) == 4 and vocab.background_part == 7
    assert parse_vocabulary("dog, horse, person").objects == ("dog", "horse", "person")
    assert parse_vocabulary("Bird: Bird Wing").parts == (("Bird Wing",),)  # no "Bird Bird Wing"
    assert resolve_vocabulary(" PartImageNet ") == partimagenet()


@pytest.mark.parametrize("text, message", [
    ("", "empty"),
    ("  ;  \n ", "empty"),
    ("cat: head: ear", "more than one ':'"),
    ("cat:", "no part names"),
    ("cat, dog; Cat", "repeated: Cat, cat"),
    ("background, cat", "added to every vocabulary"),
    ("cat: ear; dog: head, Head", "part names must be distinct"),
    ("x" * 101, "longer than 100"),
    ("a\x07b", "control character"),
])  # fmt: skip
def test_bad_vocabularies_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(VocabularyError, match=message):
        parse_vocabulary(text)


def test_vocabulary_limits() -> None:
    limits = VocabularyLimits(max_text_length=30, max_objects=3, max_parts=2)
    with pytest.raises(VocabularyError, match="at most 30"):
        parse_vocabulary("a" * 31, limits=limits)
    with pytest.raises(VocabularyError, match="4 objects; at most 3"):
        parse_vocabulary("a, b, c, d", limits=limits)
    with pytest.raises(VocabularyError, match="3 parts; at most 2"):
        parse_vocabulary("a: x, y, z", limits=limits)
    with pytest.raises(VocabularyError, match="larger than allowed"):
        resolve_vocabulary(coco(), limits=limits)
    assert resolve_vocabulary("coco", limits=limits) == coco()  # presets are the server's own lists


# ----------------------------------------------------------------------------- which CLIP, and refusals
def test_clip_spec_parsing(monkeypatch) -> None:
    monkeypatch.delenv("CAST_CLIP_MODEL", raising=False)
    assert clip_spec() == ClipModelSpec("ViT-B-16", "openai")
    monkeypatch.setenv("CAST_CLIP_MODEL", "hf-hub:org/tiny")
    assert clip_spec().kind == "hf-hub" and clip_spec().target == "org/tiny"
    assert clip_spec("local-dir:/x").kind == "local-dir" and str(clip_spec("ViT-B-32:laion2b_s34b_b79k")) == "ViT-B-32:laion2b_s34b_b79k"
    for bad in ("ViT-B-16", "hf-hub:", "local-dir:  "):
        with pytest.raises(ClipModelError):
            clip_spec(bad)
    with pytest.raises(ClipModelError, match="no pretrained tag 'nope'"):
        load_clip("ViT-B-16:nope")
    with pytest.raises(ClipModelError, match="not an open_clip architecture"):
        load_clip("NoSuchNet:openai")


def test_folder_without_weights_is_refused_not_randomised(folder: Path, tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text((folder / "clip_tiny" / "open_clip_config.json").read_text())
    with pytest.raises(ClipModelError, match="no weights"):
        load_clip(f"local-dir:{tmp_path}")
    with pytest.raises(ClipModelError, match="does not exist"):
        load_clip(f"local-dir:{tmp_path / 'missing'}")
    (tmp_path / "open_clip_model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ClipModelError, match="could not be built"):
        load_clip(f"local-dir:{tmp_path}")


def test_default_clip_offline_and_not_cached_says_how_to_get_it() -> None:
    # conftest runs the tests offline with an empty HF cache: OpenAI's ViT-B/16 cannot be had
    with pytest.raises(ClipModelError) as err:
        load_clip("ViT-B-16:openai")
    message = str(err.value)
    assert "ViT-B-16:openai" in message and "HF_HUB_OFFLINE" in message
    assert "hf download timm/vit_base_patch16_clip_224.openai" in message and "CAST_CLIP_MODEL=local-dir:" in message


# ----------------------------------------------------------------------------- hierarchies
@pytest.fixture(scope="module")
def hierarchy(astronaut):
    return Segmenter(tiny_model(parity_dir())).run(astronaut)


def test_name_hierarchy_gives_one_record_per_segment(hierarchy, namer) -> None:
    vocab = parse_vocabulary("person: head, arm, suit; flag; rocket: body, fin")
    names = namer.name_hierarchy(hierarchy, vocab)
    coarsest = hierarchy.num_levels - 1
    assert names.object_level == coarsest and names.part_levels == (coarsest - 1,)
    for level in names.levels:
        got = sorted(r.segment for r in names.for_level(level))
        assert got == hierarchy.segment_ids(level).tolist()
    for r in names.for_level(coarsest):
        assert r.kind == "object" and r.name in vocab.object_classes and 0 < r.score <= 1
        assert len(r.runner_ups) == 3 and all(n in vocab.object_classes and n != r.name for n, _ in r.runner_ups)
    for r in names.for_level(coarsest - 1):
        allowed = vocab.parts[r.object_index] or (r.object_name,) if r.object_index < len(vocab.objects) else ("Background",)
        assert r.name in allowed
        # §11.4: the object is the one under the segment's first pixel (here: in the padded square frame)
    assert json.dumps(names.to_dict())


def test_parts_follow_the_object_under_the_first_pixel(hierarchy, namer, clip) -> None:
    vocab = partimagenet()
    names = namer.name_hierarchy(hierarchy, vocab, object_level=4, part_levels=[3])
    framed_objects = frame_labels(clip, hierarchy.labels(4), pad=True)
    framed_parts = frame_labels(clip, hierarchy.labels(3), pad=True)
    for r in names.for_level(3):
        rows, cols = torch.nonzero(framed_parts == r.segment, as_tuple=True)
        if len(rows) == 0:
            continue  # a segment the resize dropped: named from its coverage mask
        coarse = int(framed_objects[rows[0], cols[0]])
        assert r.object_name == names.name_of(4, coarse).name
        if r.object_name == "Background":
            assert r.name == "Background" and r.class_index == 40
        else:
            assert r.name in vocab.parts[vocab.objects.index(r.object_name)]


def test_other_vocabulary_reuses_segment_features(hierarchy, clip, monkeypatch) -> None:
    namer = SegmentNamer(clip)
    first = namer.name_hierarchy(hierarchy, "coco", object_level=4, part_levels=[3])
    calls = []
    original = clip.encode_images
    monkeypatch.setattr(clip, "encode_images", lambda images: calls.append(len(images)) or original(images))
    second = namer.name_hierarchy(hierarchy, "partimagenet", object_level=4, part_levels=[3])
    assert calls == [] and namer.features.hits == 2
    assert {r.name for r in first.records} <= set(coco().object_classes)
    assert {r.name for r in second.records} <= set(partimagenet().object_classes) | set(partimagenet().part_classes)


def test_naming_caps_and_bad_levels(hierarchy, namer) -> None:
    with pytest.raises(VocabularyError, match="at most 3 are allowed per request"):
        namer.name_hierarchy(hierarchy, "coco", max_segments=3)
    with pytest.raises(VocabularyError, match="does not exist"):
        namer.name_hierarchy(hierarchy, "coco", object_level=9)
    with pytest.raises(VocabularyError, match="both the object level and a part level"):
        namer.name_hierarchy(hierarchy, "coco", object_level=3, part_levels=[3])


def test_text_search_ranks_segments_and_keeps_features(hierarchy, clip, chelsea) -> None:
    from cast.naming import TextSearchCache

    other = Segmenter(tiny_model(parity_dir())).run(chelsea)
    namer = SegmentNamer(clip)
    cache = TextSearchCache()
    built = []
    images = lambda: built.append(1) or [("astronaut", hierarchy), ("chelsea", other)]  # noqa: E731
    collection = SimpleNamespace()
    index = cache.get(collection, 3, namer, images)
    assert len(index) == len(hierarchy.segment_ids(3)) + len(other.segment_ids(3))
    hits = index.search(namer, "a cat's face", top_k=5)
    assert len(hits) == 5 and [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)
    # the best hit is the segment whose feature is most similar to the prompt's, computed here directly
    query = clip.encode_text(["a cat's face"])[0]
    assert abs(float((index.vectors @ query).max()) - hits[0].similarity) < 1e-5
    assert {h.image for h in hits} <= {"astronaut", "chelsea"} and all(h.level == 3 for h in hits)
    assert cache.get(collection, 3, namer, images) is index and built == [1]  # built once, then reused
    assert cache.get(SimpleNamespace(), 3, namer, images) is not index and built == [1, 1]  # another collection
    with pytest.raises(VocabularyError, match="type what"):
        index.search(namer, "   ")
    with pytest.raises(VocabularyError, match="at most 200"):
        index.search(namer, "x" * 201)


def test_text_encoding_up_to_the_end_token_equals_the_full_context(clip) -> None:
    from cast.naming.clip import _encode_text_up_to_eot

    prompts = ["a photo of a cat", "a photo of a very long and detailed description of a red bicycle wheel", "x"]
    tokens = clip.tokenizer(prompts)
    with torch.inference_mode():
        full = clip.model.encode_text(tokens)
        short = _encode_text_up_to_eot(clip.model, tokens)
    assert torch.allclose(short, full, atol=1e-5, rtol=0)


def test_space_front_matter_preloads_the_default_clip_weights(monkeypatch, tmp_path: Path) -> None:
    """The file `load_clip()` looks for first is the one the Space's preload_from_hub puts in the cache."""
    import re

    from reference import TESTS_DIR

    front = (TESTS_DIR.parent / "README.md").read_text().split("---")[1]
    block = re.search(r"preload_from_hub:\n((?:\s+- .+\n)+)", front)
    entries = [tuple(line.strip()[2:].split(" ", 1)) for line in block.group(1).splitlines()]
    asked = []
    import cast.naming.clip as clip_module

    def fake_hub_file(repo_id, filename, **kwargs):
        asked.append((repo_id, filename))
        return tmp_path / filename

    monkeypatch.setattr(clip_module, "_hub_file", fake_hub_file)
    monkeypatch.delenv("CAST_CLIP_MODEL", raising=False)
    clip_module.fetch_clip_weights()
    assert asked[0] in entries


def test_hosted_app_caps_naming(hierarchy, monkeypatch) -> None:
    """Hosted: vocabulary size, text length and CLIP passes per request are capped; the model is the server's."""
    from types import SimpleNamespace

    from app.config import AppConfig, HostedLimits
    from app.naming_panel import NamingService, _names_only, rank_segments_by_text
    from app.notices import Notice

    monkeypatch.setenv("CAST_CLIP_MODEL", f"local-dir:{naming_dir() / 'clip_tiny'}")
    limits = HostedLimits(max_vocabulary_objects=5, max_vocabulary_parts=4, max_vocabulary_chars=60,
                          max_named_segments=10, max_search_text_chars=20)
    service = NamingService(AppConfig(hosted=True, limits=limits))
    session = SimpleNamespace(hierarchy=hierarchy)
    with pytest.raises(VocabularyError, match="6 objects; at most 5"):
        _names_only(service, session, "a, b, c, d, e, f", 4, "none")
    with pytest.raises(VocabularyError, match="at most 60"):
        _names_only(service, session, "a, " * 30, 4, "none")
    with pytest.raises(VocabularyError, match="at most 10 are allowed per request"):
        _names_only(service, session, "cat, dog", 4, 3)  # 8 + 16 CLIP passes
    names = _names_only(service, session, "cat, dog", 4, "none")
    assert len(names.records) == len(hierarchy.segment_ids(4)) and names.clip_model == service.spec.__str__()
    with pytest.raises(Notice, match="at most 20"):
        rank_segments_by_text(service, SimpleNamespace(items=[]), "x" * 21, 3, 5)
    local = NamingService(AppConfig(hosted=False))
    assert local.max_segments is None and local.limits.max_objects == 1000
