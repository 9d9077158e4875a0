"""Optical flow models."""
from .sea_raft import SEARAFT, convert_official_state_dict  # noqa: F401
