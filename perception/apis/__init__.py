"""init_model / inference functions used by tools and robotics scripts."""
