"""Image overlays, disparity colour maps and point-cloud renders."""
from .boxes3d import (
    draw_projected_boxes,
    open3d_can_render,
    projected_box_extents,
    render_bev,
    render_points_open3d,
    render_scene,
    write_png,
)
from .colors import box_colors, class_color, colorize

__all__ = ['box_colors', 'class_color', 'colorize', 'draw_projected_boxes', 'open3d_can_render',
           'projected_box_extents', 'render_bev', 'render_points_open3d', 'render_scene',
           'write_png']
