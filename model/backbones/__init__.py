"""Frozen backbones: base (interface), video_vit (own + random), timm_frames, factory (spec strings)."""
