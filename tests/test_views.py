"""Image views: geometry of the paper's settings and seeded randomness."""

from __future__ import annotations

import torch

from skfungi._utils.seeding import generator
from skfungi.views.image import center_view, dino_crops, patchify, random_resized_crop


def test_patchify_at_224_is_the_papers_7x7_grid_of_112px_patches_stride_18():
    image = torch.rand(3, 224, 224)
    patches = patchify(image, 224, grid=7, output_size=112)
    assert patches.shape == (49, 3, 112, 112)
    for row in range(7):
        for col in range(7):
            top, left = 18 * row, 18 * col
            assert torch.equal(patches[row * 7 + col], image[:, top : top + 112, left : left + 112])
    assert patchify(image, 224, grid=7).shape == (49, 3, 224, 224)


def test_patchify_resizes_non_square_images_first():
    assert patchify(torch.rand(1, 30, 50), 16, grid=4).shape == (16, 1, 16, 16)


def test_center_view_keeps_aspect_and_crops_the_middle():
    image = torch.zeros(1, 10, 20)
    image[:, :, 5:15] = 1.0
    view = center_view(image, 10)
    assert view.shape == (1, 10, 10) and torch.all(view == 1.0)


def test_random_resized_crop_is_seeded_and_sized():
    image = torch.rand(3, 64, 48)
    first = random_resized_crop(image, 32, (0.05, 0.25), generator(5))
    again = random_resized_crop(image, 32, (0.05, 0.25), generator(5))
    other = random_resized_crop(image, 32, (0.05, 0.25), generator(6))
    assert first.shape == (3, 32, 32)
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_crop_areas_respect_the_scale_range():
    from skfungi.views.image import _crop_box

    rng = generator(0)
    for _ in range(200):
        _, _, height, width = _crop_box(100, 100, (0.05, 0.25), (3 / 4, 4 / 3), rng)
        assert 0.04 <= height * width / 10_000 <= 0.26


def test_dino_crops_counts_and_sizes():
    image = torch.rand(3, 40, 40)
    global_views, local_views = dino_crops(image, 32, 2, 10, (0.25, 1.0), (0.05, 0.25), generator(0))
    assert global_views.shape == (2, 3, 32, 32) and local_views.shape == (10, 3, 32, 32)
    _, small = dino_crops(image, 32, 2, 10, (0.25, 1.0), (0.05, 0.25), generator(0), local_size=12)
    assert small.shape == (10, 3, 12, 12)


def test_word_deletion_is_seeded_and_drops_about_p():
    from skfungi.views.text import word_deletion

    text = " ".join(f"w{i}" for i in range(2000))
    dropped = word_deletion(text, 0.1, generator(0))
    assert dropped == word_deletion(text, 0.1, generator(0)) != word_deletion(text, 0.1, generator(1))
    kept = dropped.split()
    assert 0.08 < 1 - len(kept) / 2000 < 0.12
    assert kept == sorted(kept, key=lambda word: int(word[1:]))  # order preserved
    assert word_deletion("   ", 0.1, generator(0)) == ""
    assert word_deletion("a b", 1.0, generator(0)) == ""


def test_noise_and_roll_matches_its_definition():
    from skfungi.views.audio import noise_and_roll

    frames = torch.arange(40, dtype=torch.float32).reshape(20, 2)
    view = noise_and_roll(frames, generator(3), noise_scale=0.1, max_roll=10)
    rng = generator(3)
    strength = float(torch.rand((), generator=rng, dtype=torch.float64)) * 0.1
    noise = torch.rand(frames.shape, generator=rng, dtype=torch.float64).float()
    shift = int(torch.randint(-10, 10, (), generator=rng))
    assert torch.equal(view, torch.roll(frames + noise * strength, shift, dims=0))
    assert 0 <= float((torch.roll(view, -shift, 0) - frames).max()) <= 0.1


def test_dropout_and_noise_zeroes_features_and_scales_noise():
    from skfungi.views.tabular import dropout_and_noise

    row = torch.full((10_000,), 5.0, dtype=torch.float64)
    view = dropout_and_noise(row, generator(0), 0.1, 0.0, torch.ones(10_000, dtype=torch.float64))
    assert 0.08 < float((view == 0).double().mean()) < 0.12 and set(view.unique().tolist()) == {0.0, 5.0}
    noisy = dropout_and_noise(row, generator(0), 0.0, 0.5, torch.full((10_000,), 2.0, dtype=torch.float64))
    assert abs(float((noisy - row).std()) - 1.0) < 0.05
