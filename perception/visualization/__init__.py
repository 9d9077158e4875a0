"""Image overlays, disparity and flow colour maps, point-cloud renders."""
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
from .flow import flow_to_color, make_color_wheel
from .overlays import (
    add_colorbar,
    colorize_disparity,
    default_palette,
    load_box_predictions,
    overlay_segmentation,
    read_disparity,
    read_label_map_any,
)

__all__ = ['add_colorbar', 'box_colors', 'class_color', 'colorize', 'colorize_disparity',
           'default_palette', 'draw_projected_boxes', 'flow_to_color', 'load_box_predictions',
           'make_color_wheel', 'open3d_can_render', 'overlay_segmentation',
           'projected_box_extents', 'read_disparity', 'read_label_map_any', 'render_bev',
           'render_points_open3d', 'render_scene', 'write_png']
