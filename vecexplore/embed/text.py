"""CLIP's text tower: prompts → L2-normed embeddings (for :mod:`vecexplore.analysis.words`)."""

from __future__ import annotations

import numpy as np


def encode_prompts(loaded, prompts: list[str]) -> np.ndarray:
    """(P, D) float32 L2-normed text embeddings of ``prompts`` with a loaded open_clip model's text tower."""
    import open_clip
    import torch

    tokenizer = open_clip.get_tokenizer(loaded.model_name)
    with torch.no_grad():
        tokens = tokenizer(prompts).to(loaded.device)
        out = loaded.model.encode_text(tokens).float()
        out = out / out.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return out.cpu().numpy().astype(np.float32)
