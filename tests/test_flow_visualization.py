"""Middlebury colour wheel: against the independent ``flowiz`` package and hand values."""
from __future__ import annotations

import numpy as np
import pytest

from perception.visualization import flow_to_color, make_color_wheel


def test_wheel_has_the_baker_segments():
    wheel = make_color_wheel()
    assert wheel.shape == (55, 3) and wheel.dtype == np.uint8
    # first colour of each segment (RY 15, YG 6, GC 4, CB 11, BM 13, MR 6) and two ramps by hand
    starts = {0: (255, 0, 0), 15: (255, 255, 0), 21: (0, 255, 0), 25: (0, 255, 255),
              36: (0, 0, 255), 49: (255, 0, 255)}
    for index, rgb in starts.items():
        assert tuple(wheel[index]) == rgb, index
    assert tuple(wheel[14]) == (255, 238, 0)   # floor(255 * 14 / 15)
    assert tuple(wheel[54]) == (255, 0, 43)    # 255 - floor(255 * 5 / 6)


def test_matches_flowiz_on_random_flow():
    flowiz = pytest.importorskip('flowiz')
    rng = np.random.default_rng(0)
    flow = (rng.normal(size=(48, 64, 2)) * 7).astype(np.float32)
    flow[5, 7] = 0  # a zero vector among them
    ours = flow_to_color(flow)
    theirs = flowiz.convert_from_flow(flow.copy())  # flowiz writes into its input
    assert ours.shape == (48, 64, 3) and ours.dtype == np.uint8
    # flowiz normalises by max + float32 eps; the floor(255 * c) can then land one lower
    # (measured: 0 of 3072 pixels differ here).
    diff = np.abs(ours.astype(int) - theirs.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_hand_values():
    right = np.array([[[3.0, 0.0]]])
    assert tuple(flow_to_color(right)[0, 0]) == (255, 0, 0)            # saturated red
    assert tuple(flow_to_color(right, max_flow=6)[0, 0]) == (255, 127, 127)  # half saturation
    assert tuple(flow_to_color(right, max_flow=1.5)[0, 0]) == (191, 0, 0)    # beyond: x 0.75
    left = np.array([[[-2.0, 0.0]]])
    # atan2(-0, 2) = 0: wheel position 27 = CB segment entry 2, G = 255 - floor(255 * 2 / 11)
    assert tuple(flow_to_color(left)[0, 0]) == (0, 209, 255)
    assert (flow_to_color(np.zeros((4, 5, 2))) == 255).all()            # no motion: white
    flow = np.array([[[1.0, 0.0], [np.nan, 0.0], [2e9, 0.0]]])
    image = flow_to_color(flow)
    assert (image[0, 1:] == 0).all() and tuple(image[0, 0]) == (255, 0, 0)  # unknown: black


def test_normalises_by_the_largest_magnitude():
    flow = np.array([[[1.0, 0.0], [4.0, 0.0]]])
    image = flow_to_color(flow)
    assert tuple(image[0, 1]) == (255, 0, 0)
    assert tuple(image[0, 0]) == (255, 191, 191)  # 1 - 0.25 * (1 - 0) -> floor(255 * 0.75)


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r'\(H, W, 2\)'):
        flow_to_color(np.zeros((4, 5, 3)))
    with pytest.raises(ValueError, match='max_flow'):
        flow_to_color(np.zeros((4, 5, 2)), max_flow=0)
