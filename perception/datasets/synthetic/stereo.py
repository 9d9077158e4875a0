"""Synthetic rectified stereo pairs with exact disparity, for learning tests and demos.

A scene is a stack of planar layers seen by a rectified pair: a slanted background plane that
fills the view, and a few textured objects (rectangles and ellipses, fronto-parallel or slanted)
nearer the camera. For a plane, the left-view disparity is affine in the left pixel coordinates,
``d(x, y) = a x + b y + c``, so each layer is fully described by ``(a, b, c)``, its outline in
the left view and a texture painted on it in left-view coordinates.

* The left image shows at each pixel the layer with the largest disparity (the nearest) among
  those whose outline covers it; its disparity is that layer's ``d(x, y)``, exact by construction.
* The right image is that scene seen from the right camera: left point ``(x, y)`` of a layer
  lands at ``x - d(x, y)``. Each layer is warped as a whole (vectorised): for an affine ``d`` the
  right pixel ``x_r`` receives the left point ``x = (x_r + b y + c) / (1 - a)``, sampled from the
  layer's texture, and a z-buffer keeps the nearest layer at each right pixel. This is the exact
  form of forward-warping the layer, without the holes of splatting.
* A left pixel is occluded when its match is not seen in the right image at pixel resolution:
  one of the two right pixels around ``x - d`` shows another layer (a nearer one hides it, or it
  is on a silhouette) or lies outside the right image.

Textures come from :func:`render_texture_image` plus fine noise, blurred slightly so that
bilinear sampling of the right image at ``x - d`` reproduces the left colour to within a grey
level (the test of this module checks it).
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
from torch.utils.data import Dataset

from ...registry import DATASETS, TRANSFORMS
from .images import render_texture_image

__all__ = ['SyntheticStereoDataset', 'render_stereo_pair']

# Gaussian blur of the textures (px): enough that bilinear interpolation is accurate to well
# under a grey level, little enough that a 1 px shift still changes colours by many grey levels.
_TEXTURE_SIGMA = 1.3
# Standard deviation (grey levels) of the per-pixel noise added to textures before blurring,
# so that no region is textureless and every pixel can be matched.
_NOISE_STD = 40.0


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``(height, width, 3)`` float32 texture, values 0-255 (still unrounded)."""
    image = render_texture_image(rng, height, width).astype(np.float32)
    image += rng.normal(0.0, _NOISE_STD, size=(height, width, 1)).astype(np.float32)
    image = cv2.GaussianBlur(image, (0, 0), _TEXTURE_SIGMA, borderType=cv2.BORDER_REFLECT)
    return np.clip(image, 0, 255)


def _plane(rng: np.random.Generator, x0: float, x1: float, y0: float, y1: float,
           low: float, high: float, max_change: float) -> np.ndarray:
    """Random ``(a, b, c)`` with ``a x + b y + c`` in ``[low, high]`` over the box's corners.

    The slope is drawn so the disparity changes by at most ``max_change`` px across the box;
    the offset is drawn so the range over the box fits in ``[low, high]`` (for an affine
    function the extremes over a box are at its corners).
    """
    span_x, span_y = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    a = rng.uniform(-0.5, 0.5) * max_change / span_x
    b = rng.uniform(-0.5, 0.5) * max_change / span_y
    corners = np.array([a * x + b * y for x in (x0, x1) for y in (y0, y1)])
    lo, hi = low - corners.min(), high - corners.max()
    c = rng.uniform(lo, hi) if hi > lo else 0.5 * (lo + hi)
    return np.array([a, b, c], dtype=np.float64)


def render_stereo_pair(height: int, width: int, max_disparity: float,
                       rng: np.random.Generator, num_objects: int | None = None) -> dict:
    """Render one rectified pair and its exact left-view disparity.

    Args:
        height, width: image size in pixels.
        max_disparity: largest disparity in the scene (px); all disparities are in
            ``(0, max_disparity]``.
        rng: the source of randomness (the pair is a pure function of its state).
        num_objects: objects in front of the background; random in 2..5 when None.

    Returns:
        dict with

        * ``left``, ``right``: ``(H, W, 3)`` uint8 RGB;
        * ``disparity``: ``(H, W)`` float32 left-view disparity: left pixel ``(x, y)`` matches
          right ``(x - d, y)``;
        * ``valid``: ``(H, W)`` bool, True everywhere (the disparity is known at every pixel);
        * ``occluded``: ``(H, W)`` bool, True where the left pixel's match is not visible in the
          right image (hidden, on a silhouette, or outside it);
        * ``disparity_right``: ``(H, W)`` float32 right-view disparity: right pixel ``(x, y)``
          shows the left point ``(x + d_r, y)``;
        * ``layer_left``, ``layer_right``: ``(H, W)`` int16 index of the visible layer
          (0 background, 1.. objects).
    """
    if height < 8 or width < 8:
        raise ValueError(f'render_stereo_pair: image must be at least 8x8, got {width}x{height}')
    if not 1 <= max_disparity < width:
        raise ValueError(f'render_stereo_pair: max_disparity must be in [1, width), got '
                         f'{max_disparity} for width {width}')
    if num_objects is None:
        num_objects = int(rng.integers(2, 6))
    # The right view sees left points up to x = W - 1 + max_disparity: textures extend that far.
    pad = int(np.ceil(max_disparity)) + 2
    tex_width = width + pad
    min_disp = min(0.5, 0.05 * max_disparity)

    # Layers as (plane (a, b, c), outline test on left coordinates, texture).
    background = _plane(rng, 0, tex_width - 1, 0, height - 1, min_disp, 0.4 * max_disparity,
                        max_change=0.3 * max_disparity)
    layers: list[tuple[np.ndarray, Any, np.ndarray]] = [
        (background, None, _texture(rng, height, tex_width))]
    for _ in range(num_objects):
        half_w = rng.uniform(0.06, 0.22) * width
        half_h = rng.uniform(0.08, 0.3) * height
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        box = (cx - half_w, cx + half_w, cy - half_h, cy + half_h)
        slanted = rng.random() < 0.5
        plane = _plane(rng, *box, low=0.35 * max_disparity, high=max_disparity,
                       max_change=0.25 * max_disparity if slanted else 0.0)
        ellipse = rng.random() < 0.5
        layers.append((plane, (cx, cy, half_w, half_h, ellipse), _texture(rng, height, tex_width)))

    def inside(outline: Any, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        if outline is None:
            return np.ones(xs.shape, dtype=bool)
        cx, cy, half_w, half_h, ellipse = outline
        u, v = (xs - cx) / half_w, (ys - cy) / half_h
        if ellipse:
            return u * u + v * v <= 1.0
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)

    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    left = np.zeros((height, width, 3), np.float32)
    right = np.zeros((height, width, 3), np.float32)
    disp_left = np.full((height, width), -np.inf)
    disp_right = np.full((height, width), -np.inf)
    layer_left = np.zeros((height, width), np.int16)
    layer_right = np.zeros((height, width), np.int16)
    for index, ((a, b, c), outline, texture) in enumerate(layers):
        # Left view: the layer at integer left pixels; z-buffer keeps the largest disparity.
        disp = a * xs + b * ys + c
        win = inside(outline, xs, ys) & (disp > disp_left)
        disp_left[win] = disp[win]
        layer_left[win] = index
        left[win] = texture[:, :width][win]
        # Right view: right pixel x_r shows the left point x with x - d(x, y) = x_r.
        src_x = (xs + b * ys + c) / (1.0 - a)
        disp = a * src_x + b * ys + c
        win = inside(outline, src_x, ys) & (disp > disp_right)
        sampled = cv2.remap(texture, src_x.astype(np.float32), ys.astype(np.float32),
                            cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        disp_right[win] = disp[win]
        layer_right[win] = index
        right[win] = sampled[win]

    # Occlusion: both right pixels around x - d must show the left pixel's own layer.
    match_x = xs - disp_left
    x0 = np.floor(match_x).astype(np.int64)
    x1 = np.minimum(x0 + 1, width - 1)
    rows = ys.astype(np.int64)
    in_view = (x0 >= 0) & (match_x <= width - 1)
    x0c = np.clip(x0, 0, width - 1)
    occluded = ~(in_view & (layer_right[rows, x0c] == layer_left)
                 & (layer_right[rows, x1] == layer_left))
    return dict(
        left=np.clip(np.round(left), 0, 255).astype(np.uint8),
        right=np.clip(np.round(right), 0, 255).astype(np.uint8),
        disparity=disp_left.astype(np.float32),
        valid=np.ones((height, width), dtype=bool),
        occluded=occluded,
        disparity_right=disp_right.astype(np.float32),
        layer_left=layer_left,
        layer_right=layer_right,
    )


@DATASETS.register_module()
class SyntheticStereoDataset(Dataset):
    """Generated stereo pairs (:func:`render_stereo_pair`) as stereo pipeline frames.

    Item ``i`` is a pure function of ``(seed, i)``: train and validation sets with different
    seeds never share a scene, and every epoch and worker sees the same data. Each frame has the
    keys the stereo loaders set (``perception/datasets/transforms/stereo.py``): ``img``,
    ``img_right`` ``(H, W, 3)`` uint8, ``gt_disp`` ``(H, W)`` float32, ``gt_valid``,
    ``noc_mask`` ``(H, W)`` bool, ``img_shape``, ``ori_shape``, ``frame_id``, ``sample_idx``; so
    the pipeline can start with the augmentation and end with ``PackStereoInputs``.

    Args:
        num_pairs: length of the dataset.
        height, width: image size.
        max_disparity: largest disparity (px) in any pair.
        seed: base seed.
        pipeline: transforms (configs or callables) applied to each frame.
    """

    def __init__(self, num_pairs: int = 1000, height: int = 128, width: int = 256,
                 max_disparity: float = 32, seed: int = 0,
                 pipeline: Sequence[dict | Any] = ()) -> None:
        if num_pairs < 1:
            raise ValueError(f'SyntheticStereoDataset: num_pairs must be >= 1, got {num_pairs}')
        self.num_pairs = num_pairs
        self.height, self.width = height, width
        self.max_disparity = max_disparity
        self.seed = seed
        # Built here from the perception registry, so no default scope needs to be set.
        self.pipeline = [TRANSFORMS.build(t) if isinstance(t, dict) else t for t in pipeline]
        self.metainfo = dict(task='stereo', max_disparity=max_disparity)

    def __len__(self) -> int:
        return self.num_pairs

    def get_frame(self, index: int) -> dict:
        """The raw frame of pair ``index`` (before the pipeline)."""
        if not 0 <= index < self.num_pairs:
            raise IndexError(f'SyntheticStereoDataset: index {index} out of range '
                             f'[0, {self.num_pairs})')
        rng = np.random.default_rng([self.seed, index])
        pair = render_stereo_pair(self.height, self.width, self.max_disparity, rng)
        return {'frame_id': f'synthetic_{index:05d}', 'sample_idx': index,
                'img': pair['left'], 'img_right': pair['right'],
                'gt_disp': pair['disparity'], 'gt_valid': pair['valid'],
                'noc_mask': ~pair['occluded'],
                'img_shape': (self.height, self.width), 'ori_shape': (self.height, self.width)}

    def __getitem__(self, index: int) -> dict:
        frame = self.get_frame(index)
        for transform in self.pipeline:
            frame = transform(frame)
            if frame is None:
                raise ValueError(f'SyntheticStereoDataset: transform {transform!r} dropped frame '
                                 f'{index}; synthetic frames cannot be skipped')
        return frame

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(num_pairs={self.num_pairs}, height={self.height}, '
                f'width={self.width}, max_disparity={self.max_disparity}, seed={self.seed})')
