"""Image ← text cross-attention of FIBER's fused Swin blocks."""
from typing import Optional

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from torch import Tensor

from .softmax_attention import softmax_attention


class ImageTextCrossAttention(BaseModule):
    """Image tokens attend to text tokens; the result is scaled by a learnable gate that starts at 0.

    The query is the window self-attention output ``s`` (after its projection), optionally layer-normed first
    (FIBER v3); keys and values are linear maps of the text states. The attention is per image token, so it is
    computed on the (B, H*W, C) map directly — identical to the original's evaluation on the window layout.

    Args:
        embed_dims (int): Image token width C.
        text_dims (int): Text token width.
        num_heads (int): Heads (head width C / num_heads).
        query_norm (bool): LayerNorm on the query input (FIBER v3). Defaults to False (v2).
        qkv_bias (bool): Bias in the query and key/value projections. Defaults to True.
        attn_drop (float): Dropout on attention weights. Defaults to 0.
        proj_drop (float): Dropout after the output projection. Defaults to 0.
        use_sdpa (bool): Use :func:`softmax_attention` (fused kernels, no stored probabilities). Defaults to
            True.
    """

    def __init__(self,
                 embed_dims: int,
                 text_dims: int,
                 num_heads: int,
                 query_norm: bool = False,
                 qkv_bias: bool = True,
                 attn_drop: float = 0.,
                 proj_drop: float = 0.,
                 use_sdpa: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims {embed_dims} is not divisible by num_heads {num_heads}')
        self.num_heads = num_heads
        self.head_dims = embed_dims // num_heads
        self.use_sdpa = use_sdpa
        self.query_norm = nn.LayerNorm(embed_dims) if query_norm else nn.Identity()
        self.query = nn.Linear(embed_dims, embed_dims, bias=qkv_bias)
        self.text_kv = nn.Linear(text_dims, 2 * embed_dims, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gate = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, text: Tensor, text_mask: Tensor) -> Tensor:
        """
        Args:
            x (Tensor): (B, L, C) image tokens (the self-attention output).
            text (Tensor): (B, T, D) text states.
            text_mask (Tensor): (B, T), nonzero for valid tokens; padded tokens get no weight.

        Returns:
            Tensor: (B, L, C) gated cross-attention output (to be added to ``x``).
        """
        B, L, C = x.shape
        T = text.shape[1]
        q = self.query(self.query_norm(x)).view(B, L, self.num_heads, self.head_dims).transpose(1, 2)
        k, v = self.text_kv(text).view(B, T, 2, self.num_heads, self.head_dims).permute(2, 0, 3, 1, 4).unbind(0)
        valid = (text_mask > 0).view(B, 1, 1, T)
        drop = self.attn_drop.p if self.training else 0.
        if self.use_sdpa:
            out = softmax_attention(q, k, v, attn_mask=valid, dropout_p=drop)
        else:
            logits = (q * self.head_dims**-0.5) @ k.transpose(-2, -1)
            logits = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
            out = self.attn_drop(logits.softmax(dim=-1)) @ v
        out = out.transpose(1, 2).reshape(B, L, C)
        return self.gate * self.proj_drop(self.out_proj(out))
