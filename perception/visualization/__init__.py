"""Image overlays, disparity colour maps and point-cloud renders."""
