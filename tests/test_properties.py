"""Image and object properties against hand-built images and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from vecexplore.properties import (
    ANALYSIS_SIZE,
    analysis_image,
    object_properties,
    pixel_properties,
    table_properties,
)


def _noise_image(seed=0, size=(200, 150)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


@pytest.mark.parametrize(
    ("value", "brightness"),
    [((0, 0, 0), 0.0), ((255, 255, 255), 1.0), ((255, 0, 0), 0.299), ((0, 255, 0), 0.587), ((0, 0, 255), 0.114)],
)
def test_brightness_of_flat_images(value, brightness):
    rgb = np.zeros((20, 30, 3), np.uint8) + np.array(value, np.uint8)
    props = pixel_properties(rgb)
    assert props["brightness"] == pytest.approx(brightness)
    assert props["contrast"] == pytest.approx(0.0)
    assert props["sharpness"] == pytest.approx(0.0)


def test_grey_is_not_colourful_and_saturated_is():
    grey = np.full((16, 16, 3), 128, np.uint8)
    halves = np.zeros((16, 16, 3), np.uint8)
    halves[:, :8] = (255, 0, 0)
    halves[:, 8:] = (0, 0, 255)
    assert pixel_properties(grey)["colorfulness"] == pytest.approx(0.0)
    assert pixel_properties(halves)["colorfulness"] > 0.5


def test_blur_lowers_sharpness_and_darkening_lowers_brightness():
    img = _noise_image()
    sharp = pixel_properties(analysis_image(img))
    blurred = pixel_properties(analysis_image(img.filter(ImageFilter.GaussianBlur(3))))
    dark = pixel_properties(analysis_image(img.point(lambda v: v // 4)))
    assert blurred["sharpness"] < sharp["sharpness"] / 5
    assert dark["brightness"] < sharp["brightness"] / 3
    assert blurred["brightness"] == pytest.approx(sharp["brightness"], abs=0.02)


def test_checkerboard_has_maximal_contrast():
    board = np.indices((32, 32)).sum(axis=0) % 2 * 255
    rgb = np.repeat(board[..., None], 3, axis=2).astype(np.uint8)
    assert pixel_properties(rgb)["contrast"] == pytest.approx(0.5)


def test_analysis_image_reduces_long_side_never_enlarges():
    assert analysis_image(_noise_image(size=(1000, 500))).shape == (ANALYSIS_SIZE // 2, ANALYSIS_SIZE, 3)
    assert analysis_image(_noise_image(size=(100, 50))).shape == (50, 100, 3)
    assert analysis_image(Image.new("L", (10, 10))).shape == (10, 10, 3)


def test_table_properties_unknown_size_is_nan():
    props = table_properties(np.array([100, 0]), np.array([50, 0]), np.array([3, 0]))
    assert props["aspect_ratio"][0] == 2.0
    assert np.isnan(props["aspect_ratio"][1]) and np.isnan(props["width"][1])
    assert props["n_objects"].tolist() == [3.0, 0.0]


def test_object_properties_by_hand():
    xywh = np.array([[0, 0, 10, 10], [5, 5, 10, 10], [80, 40, 20, 10], [1, 1, 2, 2]], float)
    image_idx = np.array([0, 0, 0, 1])
    props = object_properties(xywh, image_idx, np.array([100, 0]), np.array([50, 0]))
    assert props["relative_area"][:3] == pytest.approx([100 / 5000, 100 / 5000, 200 / 5000])
    assert props["box_aspect_ratio"].tolist() == [1.0, 1.0, 2.0, 1.0]
    assert props["border_distance"][:3] == pytest.approx([0.0, 5 / 50, 0.0])
    assert props["n_overlapping"].tolist() == [1, 1, 0, 0]
    assert np.isnan(props["relative_area"][3]) and np.isnan(props["border_distance"][3])


def test_overlap_counts_match_brute_force():
    rng = np.random.default_rng(3)
    n = 300
    xywh = np.column_stack([rng.uniform(0, 80, (n, 2)), rng.uniform(1, 30, (n, 2))])
    image_idx = rng.integers(0, 20, n)
    got = object_properties(xywh, image_idx, np.full(20, 100), np.full(20, 100))["n_overlapping"]
    x1, y1, x2, y2 = xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]
    for i in range(n):
        same = image_idx == image_idx[i]
        hit = (np.minimum(x2[i], x2) > np.maximum(x1[i], x1)) & (np.minimum(y2[i], y2) > np.maximum(y1[i], y1))
        assert got[i] == (hit & same).sum() - 1
