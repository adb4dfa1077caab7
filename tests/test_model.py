"""Unit tests of the model math against the spec's literal definitions (spec §2, §3, §9)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import cast
from hypothesis import given, settings
from hypothesis import strategies as st

from cast.model import MODEL_CONFIGS, build_model, farthest_point_sample, get_config
from cast.model.embed import labels_to_grid, segment_mean, sincos_pos_table


def fps_reference(points: np.ndarray, k: int) -> list[int]:
    """dgl's loop, written literally: running minimum of squared distances, strict '>' scan."""
    chosen = [0]
    dist = None
    for _ in range(1, k):
        d = ((points - points[chosen[-1]]) ** 2).sum(-1)
        dist = d if dist is None else np.minimum(dist, d)
        best, best_val = 0, -1.0
        for j, v in enumerate(dist):
            if v > best_val:
                best, best_val = j, v
        chosen.append(best)
    return chosen


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 40),
    st.integers(1, 6),
    st.integers(2, 12),
    st.booleans(),
    st.integers(0, 2**31 - 1),
)
def test_fps_matches_literal_reference(m: int, d: int, k: int, integer_valued: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    pts = rng.integers(0, 3, size=(2, m, d)).astype(np.float64) if integer_valued else rng.normal(size=(2, m, d))
    ours = farthest_point_sample(torch.from_numpy(pts), k)
    for b in range(2):
        assert ours[b].tolist() == fps_reference(pts[b], k)


def test_fps_all_zero_distances_pick_index_zero() -> None:
    pts = torch.zeros(1, 5, 3)
    assert farthest_point_sample(pts, 4).tolist() == [[0, 0, 0, 0]]


def test_pos_table_axes_follow_the_official_quirk() -> None:
    table = sincos_pos_table(384, 28)
    assert table.shape == (1, 784, 384)
    q = 384 // 4
    omega = 1.0 / 10000 ** (torch.arange(q) / q)
    row1 = table[0, 28]  # (r, c) = (1, 0)
    torch.testing.assert_close(row1[:q], torch.sin(omega))
    torch.testing.assert_close(row1[2 * q : 3 * q], torch.zeros(q))
    col1 = table[0, 1]  # (r, c) = (0, 1): the column lives in the second half
    torch.testing.assert_close(col1[2 * q : 3 * q], torch.sin(omega))


def test_labels_to_grid_takes_top_left_pixel_of_each_cell() -> None:
    labels = torch.arange(224 * 224).reshape(1, 224, 224)
    grid = labels_to_grid(labels, (28, 28))
    expected = labels[:, ::8, ::8]
    assert torch.equal(grid, expected)


def test_segment_mean_zero_rows_for_absent_ids() -> None:
    values = torch.tensor([[[1.0], [3.0], [5.0], [7.0]]])
    labels = torch.tensor([[0, 0, 2, 2]])
    means, counts = segment_mean(values, labels, 4)
    assert means[0, :, 0].tolist() == [2.0, 0.0, 6.0, 0.0]
    assert counts[0].tolist() == [2, 0, 2, 0]


@pytest.mark.parametrize("name", ["cast_small", "cast_small_deep", "cast_small_deit", "cast_seg_small_pretrain"])
def test_variants_forward_shapes(name: str, astronaut: np.ndarray) -> None:
    from cast.image import InputConfig, prepare_input, to_tensor
    from cast.superpixels import SuperpixelConfig, compute_superpixels

    torch.manual_seed(0)
    model = build_model(name)
    pixels = prepare_input(astronaut, InputConfig()).pixels
    sp = torch.from_numpy(compute_superpixels(pixels, SuperpixelConfig()))[None]
    with torch.no_grad():
        out = model(to_tensor(pixels), sp)
    cfg = model.config
    s = out.num_tokens
    assert [tuple(x.shape) for x in out.logits] == [(1, s, 64), (1, 64, 32), (1, 32, 16), (1, 16, 8)]
    assert [tuple(x.shape) for x in out.centroids] == [(1, k, cfg.embed_dim) for k in (64, 32, 16, 8)]
    assert out.embedding.shape == (1, cfg.embed_dim)
    assert out.class_logits.shape == (1, 1000)
    for level, seeds in enumerate(out.seeds):
        assert seeds.min() >= 0 and len(set(seeds[0].tolist())) == seeds.shape[1], f"duplicate seeds at stage {level + 1}"


def test_registry_has_every_official_variant() -> None:
    for name in ["cast_small", "cast_small_deep", "cast_base", "cast_base_deep", "cast_seg_small_pretrain"]:
        assert name in MODEL_CONFIGS
    assert get_config("cast_base").embed_dim == 768
    assert get_config("cast_small_deep").depths == (6, 3, 3, 3)
    with pytest.raises(cast.ConfigError, match="unknown CAST variant"):
        get_config("cast_huge")


def test_parameter_counts_match_the_official_models() -> None:
    """Unique parameters equal the official counts (timings.json / spec §2.1)."""
    expected = {"cast_small": 28_339_864, "cast_small_deep": 35_437_720}
    for name, total in expected.items():
        model = build_model(name)
        assert sum(p.numel() for p in model.parameters()) == total, name


def test_pool4_is_frozen_and_pos_table_fixed() -> None:
    model = build_model("cast_small")
    assert not any(p.requires_grad for p in model.pool4.parameters())
    assert not model.pos_embed.requires_grad and not model.pe_token.requires_grad
    assert all(p.requires_grad for p in model.pool3.parameters())


def test_too_few_distinct_tokens_is_a_clear_error() -> None:
    model = build_model("cast_tiny")
    images = torch.zeros(1, 3, 224, 224)
    labels = torch.zeros(1, 224, 224, dtype=torch.long)
    labels[:, :, 112:] = 1
    with pytest.raises(ValueError, match="distinct valid tokens"):
        model(images, labels)


def test_non_native_resolution_runs_with_resized_table() -> None:
    model = build_model("cast_tiny")
    images = torch.randn(1, 3, 320, 320)
    labels = (torch.arange(320).reshape(1, 320, 1) // 16) * 20 + (torch.arange(320).reshape(1, 1, 320) // 16)
    with torch.no_grad():
        out = model(images, labels)
    assert out.logits[0].shape == (1, 400, 64)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (a GPU machine runs it: pytest -m gpu)")
def test_cuda_matches_cpu() -> None:
    torch.manual_seed(0)
    model = build_model("cast_tiny")
    images = torch.randn(1, 3, 224, 224)
    labels = (torch.arange(224).reshape(1, 224, 1) // 16) * 14 + (torch.arange(224).reshape(1, 1, 224) // 16)
    with torch.no_grad():
        cpu = model(images, labels)
        gpu = model.cuda()(images.cuda(), labels.cuda())
    torch.testing.assert_close(gpu.class_logits.cpu(), cpu.class_logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("builder", ["cast_small", "vit_conv_small"])
def test_linear_kernels_agree_and_the_choice_is_visible(builder: str, astronaut: np.ndarray) -> None:
    """oneDNN's kernel and PyTorch's default give the same forward (to float noise), same parameters and keys."""
    from cast.image import InputConfig, prepare_input, to_tensor
    from cast.model import build_vit, set_linear_kernel
    from cast.model.linear import OneDnnLinear
    from cast.superpixels import SuperpixelConfig, compute_superpixels

    torch.manual_seed(0)
    model = build_model(builder) if builder.startswith("cast") else build_vit(builder)
    assert model.linear_kernel == "onednn"
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(type(m) is OneDnnLinear for m in linears)
    pixels = prepare_input(astronaut, InputConfig()).pixels
    x = to_tensor(pixels)
    y = torch.from_numpy(compute_superpixels(pixels, SuperpixelConfig()))[None]
    run = (lambda m: m(x, y).embedding) if builder.startswith("cast") else (lambda m: m.token_features(x))
    keys, weight = list(model.state_dict()), linears[0].weight
    with torch.inference_mode():
        fast = run(model)
        set_linear_kernel(model, "default")
        plain = run(model)
    assert model.linear_kernel == "default" and list(model.state_dict()) == keys
    assert all(type(m) is torch.nn.Linear for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert any(m.weight is weight for m in model.modules() if isinstance(m, torch.nn.Linear))  # same parameters
    torch.testing.assert_close(fast, plain, atol=1e-4, rtol=1e-4)
    with pytest.raises(cast.ConfigError, match="linear kernel"):
        set_linear_kernel(model, "fast")


def test_training_runs_the_default_linear_kernel(tmp_path) -> None:
    """The engine switches a model to PyTorch's own linear for training (autograd, CUDA, bf16 paths)."""
    from cast.model import set_linear_kernel

    model = set_linear_kernel(build_model("cast_tiny"), "default")
    model.train()
    x = torch.randn(2, 3, 224, 224)
    y = torch.arange(28 * 28).reshape(1, 28, 28).repeat_interleave(8, 1).repeat_interleave(8, 2).expand(2, -1, -1) % 196
    model(x, y).embedding.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad and n.startswith("blocks.0"))
