"""Swin window attention on mmpretrain's building blocks, with a fused-kernel path and a bounded cache of
shifted-window masks.

mmpretrain's ``WindowMSA`` / ``ShiftWindowMSA`` own the parameters (``qkv``, ``proj``,
``relative_position_bias_table``) and the window partition logic; here we only change *how* the attention is
evaluated (:func:`softmax_attention`: ``F.scaled_dot_product_attention``'s fused kernels, and in CPU training
no stored attention probabilities) and stop rebuilding the shifted-window mask on every call.
"""
from typing import Optional

from mmpretrain.models.utils.attention import ShiftWindowMSA, WindowMSA
from torch import Tensor

from ...utils.lru_cache import LRUCache

from .softmax_attention import softmax_attention


class SDPAWindowMSA(WindowMSA):
    """Window multi-head self-attention with relative position bias.

    Same parameters and numerics as :class:`mmpretrain.models.utils.WindowMSA` (the shifted-window mask uses
    −100 as in the original Swin); with ``use_sdpa=True`` the attention runs through
    :func:`~fiber_mmdet.models.layers.softmax_attention` (tested equal to the plain path), the relative position
    bias and the shifted-window mask passed apart so that their (nW, heads, N, N) sum is never stored.

    Args:
        use_sdpa (bool): Use the fused attention kernel. Defaults to True.
        **kwargs: Arguments of :class:`mmpretrain.models.utils.WindowMSA`.
    """

    def __init__(self, *args, use_sdpa: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.use_sdpa = use_sdpa

    def relative_position_bias(self) -> Tensor:
        """(num_heads, N, N) bias, N = window area."""
        n = self.window_size[0] * self.window_size[1]
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        # contiguous: SDPA's CPU kernel copies a strided mask on every call, which costs more than this
        return bias.view(n, n, -1).permute(2, 0, 1).contiguous()

    def forward(self, x: Tensor, mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x (Tensor): (num_windows * B, N, C) windows, batch-major.
            mask (Tensor, optional): (num_windows, N, N) additive shifted-window mask.

        Returns:
            Tensor: (num_windows * B, N, C).
        """
        if not self.use_sdpa:
            return super().forward(x, mask)
        B_, N, C = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).reshape(B_, N, 3, heads, C // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B_, heads, N, head_dim)
        bias = self.relative_position_bias().to(q.dtype)  # (heads, N, N)
        shift_mask = None
        if mask is not None:
            # (B, nW, heads, N, ·): the shifted-window mask (nW, 1, N, N) and the bias (heads, N, N) broadcast
            num_windows = mask.shape[0]
            shape = (B_ // num_windows, num_windows, heads, N, -1)
            q, k, v = q.reshape(shape), k.reshape(shape), v.reshape(shape)
            shift_mask = mask.to(q.dtype).unsqueeze(1)
        out = softmax_attention(q, k, v, attn_mask=shift_mask, attn_bias=bias,
                                dropout_p=self.attn_drop.p if self.training else 0., scale=self.scale)
        out = out.reshape(B_, heads, N, -1).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(out))


class CachedShiftWindowMSA(ShiftWindowMSA):
    """mmpretrain's ``ShiftWindowMSA`` whose shifted-window masks come from a bounded store.

    The mask depends only on the padded feature-map size, the window and the shift, never on the weights, so
    the blocks of a backbone share one cache (``mask_cache``); without one, the module keeps its own. A mask is
    (num_windows, N, N) float32, e.g. 39 MB for one 1333x800 image's first Swin stage (window 12), so the store
    is bounded (least recently used dropped). Keys hold the padded size, window, shift and device: the mask is
    always built in float32 and cast to the query's dtype at use, so it does not depend on the autocast state.

    Args:
        mask_cache (LRUCache, optional): Shared mask store. Defaults to a new one of 32 entries (a forward
            needs one per shifted stage, 4, so 8 recent input sizes).
        **kwargs: Arguments of :class:`mmpretrain.models.utils.ShiftWindowMSA`.
    """

    def __init__(self, *args, mask_cache: Optional[LRUCache] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.mask_cache = LRUCache(32) if mask_cache is None else mask_cache

    def get_attn_mask(self, hw_shape, window_size, shift_size, device=None):  # noqa: D102
        if shift_size == 0:  # unshifted windows need no mask: nothing to store
            return None
        key = (tuple(hw_shape), window_size, shift_size, str(device))
        # mmpretrain builds the mask as a difference of broadcast views, which leaves it strided (transposed
        # windows); stored contiguous, the (windows, heads, N, N) sum with the bias is too, as SDPA takes it
        return self.mask_cache.get(
            key, lambda: ShiftWindowMSA.get_attn_mask(hw_shape, window_size, shift_size, device).contiguous())

    @staticmethod
    def window_reverse(windows: Tensor, H: int, W: int, window_size: int) -> Tensor:
        """mmpretrain's ``window_reverse`` (windows (nW*B, ws, ws, C) -> (B, H, W, C)) with the batch size left
        to ``view`` instead of computed with ``int()``, which an ONNX trace would record as a constant."""
        channels = windows.shape[-1]
        x = windows.view(-1, H // window_size, W // window_size, window_size, window_size, channels)
        return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, H, W, channels)
