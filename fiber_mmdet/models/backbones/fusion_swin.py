"""FIBER's image backbone: a Swin Transformer whose configured blocks also attend to the text."""
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn import build_norm_layer
from mmcv.cnn.bricks.drop import build_dropout
from mmcv.cnn.bricks.transformer import PatchEmbed, PatchMerging
from mmengine.model import BaseModule, ModuleList
from mmengine.model.weight_init import trunc_normal_
from torch import Tensor

from mmdet.registry import MODELS
from ...utils.lru_cache import LRUCache
from ..layers import CachedShiftWindowMSA, GeluLinearFFN, ImageTextCrossAttention, SDPAWindowMSA

#: ``text_layer_fn(step, text_hidden, image_tokens) -> new text_hidden`` runs the text layer paired with the
#: ``step``-th fused image block (see :meth:`FusionSwinTransformer.forward_fused`).
TextLayerFn = Callable[[int, Tensor, Tensor], Tensor]


class FusionSwinBlock(BaseModule):
    """A Swin block; when ``text_dims`` is set, the window attention output also cross-attends to the text.

    ``x' = x + DropPath(s + gate * CrossAttn(s, text))`` with ``s = ShiftWindowMSA(LN1(x))``, then the usual
    ``x'' = x' + DropPath(FFN(LN2(x')))``.

    Args:
        embed_dims (int): Token width C.
        num_heads (int): Attention heads.
        feedforward_channels (int): FFN hidden width.
        window_size (int): Window size.
        shift (bool): Shifted windows (shift = window_size // 2).
        text_dims (int, optional): Text width; None for an image-only block.
        i2t_query_norm (bool): LayerNorm before the image→text query (FIBER v3).
        drop_path (float): Stochastic depth rate of this block.
        use_sdpa (bool): Fused attention kernels.
        mask_cache (LRUCache, optional): Shifted-window masks shared with the other blocks.
    """

    def __init__(self,
                 embed_dims: int,
                 num_heads: int,
                 feedforward_channels: int,
                 window_size: int = 12,
                 shift: bool = False,
                 text_dims: Optional[int] = None,
                 i2t_query_norm: bool = False,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path: float = 0.,
                 use_sdpa: bool = True,
                 norm_cfg: dict = dict(type='LN'),
                 mask_cache: Optional[LRUCache] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        self.norm1 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.attn = CachedShiftWindowMSA(
            embed_dims=embed_dims,
            num_heads=num_heads,
            window_size=window_size,
            shift_size=window_size // 2 if shift else 0,
            # DropPath is applied below, after the cross-attention is added (as the original does).
            dropout_layer=dict(type='DropPath', drop_prob=0.),
            pad_small_map=True,
            window_msa=SDPAWindowMSA,
            mask_cache=mask_cache,
            qkv_bias=qkv_bias,
            attn_drop=attn_drop_rate,
            proj_drop=drop_rate,
            use_sdpa=use_sdpa)
        self.i2t = None
        if text_dims is not None:
            self.i2t = ImageTextCrossAttention(
                embed_dims, text_dims, num_heads, query_norm=i2t_query_norm, qkv_bias=qkv_bias,
                attn_drop=attn_drop_rate, proj_drop=drop_rate, use_sdpa=use_sdpa)
        self.drop_path = build_dropout(dict(type='DropPath', drop_prob=drop_path))
        self.norm2 = build_norm_layer(norm_cfg, embed_dims)[1]
        self.ffn = GeluLinearFFN(  # the GELU output is recomputed in backward, not stored
            embed_dims=embed_dims,
            feedforward_channels=feedforward_channels,
            num_fcs=2,
            ffn_drop=drop_rate,
            dropout_layer=dict(type='DropPath', drop_prob=drop_path),
            act_cfg=dict(type='GELU'),
            add_identity=True)

    @property
    def is_fused(self) -> bool:
        return self.i2t is not None

    def forward(self, x: Tensor, hw_shape: Tuple[int, int], text: Optional[Tensor] = None,
                text_mask: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x (Tensor): (B, H*W, C) tokens.
            hw_shape (tuple[int, int]): (H, W).
            text (Tensor, optional): (B, T, D) text states (fused blocks).
            text_mask (Tensor, optional): (B, T) valid-token mask.
        """
        s = self.attn(self.norm1(x), hw_shape)
        if self.i2t is not None and text is not None:
            s = s + self.i2t(s, text, text_mask)
        x = x + self.drop_path(s)
        return self.ffn(self.norm2(x), identity=x)


class FusionSwinStage(BaseModule):
    """The blocks of one Swin stage and the PatchMerging that follows it (if any)."""

    def __init__(self, blocks: List[FusionSwinBlock], downsample: Optional[PatchMerging]) -> None:
        super().__init__()
        self.blocks = ModuleList(blocks)
        self.downsample = downsample


@dataclass
class SwinState:
    """Where an image is in the backbone: the residual stream and what is already done.

    Attributes:
        x (Tensor): (B, H*W, C) residual stream (not normed).
        hw_shape (tuple[int, int]): (H, W) of ``x``.
        position (int): index of the next block to run in :meth:`FusionSwinTransformer.block_order`.
        outs (dict[int, Tensor]): finished stage outputs (B, C, H, W), keyed by stage index.
    """
    x: Tensor
    hw_shape: Tuple[int, int]
    position: int = 0
    outs: Dict[int, Tensor] = field(default_factory=dict)

    def select(self, indices: Sequence[int]) -> 'SwinState':
        """The state of batch rows ``indices`` (B' = len(indices); a row may repeat, e.g. one image per prompt).

        One row repeated is an expanded view and the whole batch in order is ``self``: no copy in either case,
        so the result is read-only (as :meth:`FusionSwinTransformer.forward_fused` treats it).
        """
        indices = [int(i) for i in indices]
        if indices == list(range(self.x.shape[0])):
            return self
        if len(set(indices)) == 1:
            i, n = indices[0], len(indices)

            def rows(t: Tensor) -> Tensor:
                return t[i:i + 1].expand(n, *t.shape[1:])
        else:
            idx = torch.as_tensor(indices, device=self.x.device)

            def rows(t: Tensor) -> Tensor:
                return t[idx]
        return SwinState(rows(self.x), self.hw_shape, self.position, {k: rows(v) for k, v in self.outs.items()})


@MODELS.register_module()
class FusionSwinTransformer(BaseModule):
    """FIBER's Swin Transformer with image←text cross-attention in the configured blocks.

    The image side of FIBER's fusion. Blocks listed in ``fusion_blocks`` get an
    :class:`ImageTextCrossAttention`; :meth:`forward_fused` runs them interleaved with the paired text layers,
    both sides updated in parallel from the previous states. Parameter layout follows mmpretrain/mmdet Swin
    (``patch_embed.projection``, ``stages.i.blocks.j.attn.w_msa.qkv``, ``ffn.layers.*``,
    ``stages.i.downsample``), so official Swin checkpoints convert with mmdet's rules.

    Args:
        arch (str | dict): ``'tiny'``, ``'small'``, ``'base'``, ``'large'`` or a dict with ``embed_dims``,
            ``depths``, ``num_heads``. FIBER-B uses ``'base'`` with window 12.
        text_dims (int): Width of the text states the fused blocks attend to (768 for roberta-base).
        fusion_blocks (sequence of (stage, block)): fused blocks in execution order. FIBER-B:
            ``((2, 14), (2, 15), (2, 16), (2, 17), (3, 0), (3, 1))``.
        i2t_query_norm (bool): FIBER v3 (LayerNorm before the image→text query). Defaults to False (v2).
        window_size (int): Window size. Defaults to 12.
        mlp_ratio (float): FFN width ratio. Defaults to 4.
        drop_path_rate (float): Stochastic depth, linearly increasing over all blocks. Defaults to 0.4.
        out_indices (sequence[int]): Stages whose outputs are returned. Defaults to (1, 2, 3).
        norm_out_indices (sequence[int], optional): Stages whose output gets a LayerNorm ``norm{i}``; None means
            all of ``out_indices`` (the original has no norm on stage 0).
        frozen_stages (int): -1 none; 0 the patch embedding; k >= 1 also stages 0..k-1 (FIBER pre-training
            freezes patch embedding + stage 0: ``frozen_stages=1``).
        with_cp (bool): Activation checkpointing per block (``use_reentrant=False``).
        use_sdpa (bool): Fused attention kernels. Defaults to True.
        attn_mask_cache_size (int): Shifted-window masks kept, least recently used dropped (one per padded size
            and shifted stage; 4 per input size). Defaults to 32.

    Example:
        >>> import torch
        >>> from fiber_mmdet.models import FusionSwinTransformer
        >>> m = FusionSwinTransformer(arch=dict(embed_dims=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8]),
        ...                           text_dims=64, fusion_blocks=((2, 1), (3, 0), (3, 1)), window_size=7)
        >>> outs = m(torch.rand(1, 3, 224, 224))
        >>> [tuple(o.shape) for o in outs]
        [(1, 64, 28, 28), (1, 128, 14, 14), (1, 256, 7, 7)]
    """

    arch_zoo = {
        'tiny': dict(embed_dims=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24]),
        'small': dict(embed_dims=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24]),
        'base': dict(embed_dims=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32]),
        'large': dict(embed_dims=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48]),
    }

    def __init__(self,
                 arch='base',
                 text_dims: int = 768,
                 fusion_blocks: Sequence[Sequence[int]] = ((2, 14), (2, 15), (2, 16), (2, 17), (3, 0), (3, 1)),
                 i2t_query_norm: bool = False,
                 in_channels: int = 3,
                 patch_size: int = 4,
                 window_size: int = 12,
                 mlp_ratio: float = 4.,
                 qkv_bias: bool = True,
                 drop_rate: float = 0.,
                 attn_drop_rate: float = 0.,
                 drop_path_rate: float = 0.4,
                 out_indices: Sequence[int] = (1, 2, 3),
                 norm_out_indices: Optional[Sequence[int]] = None,
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 use_sdpa: bool = True,
                 norm_cfg: dict = dict(type='LN'),
                 attn_mask_cache_size: int = 32,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg)
        if isinstance(arch, str):
            if arch not in self.arch_zoo:
                raise KeyError(f'Unknown arch {arch!r}; choose from {sorted(self.arch_zoo)} or pass a dict')
            arch = self.arch_zoo[arch]
        self.embed_dims = int(arch['embed_dims'])
        self.depths = [int(d) for d in arch['depths']]
        self.num_heads = [int(h) for h in arch['num_heads']]
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f'depths {self.depths} and num_heads {self.num_heads} differ in length')
        self.num_stages = len(self.depths)
        self.stage_dims = [self.embed_dims * 2**i for i in range(self.num_stages)]
        self.text_dims = text_dims
        self._block_order = [(i, j) for i, d in enumerate(self.depths) for j in range(d)]
        self.fusion_blocks = [tuple(int(v) for v in b) for b in fusion_blocks]
        self._check_fusion_blocks()
        self.out_indices = tuple(out_indices)
        if any(not 0 <= i < self.num_stages for i in self.out_indices):
            raise ValueError(f'out_indices {self.out_indices} outside 0..{self.num_stages - 1}')
        self.norm_out_indices = tuple(self.out_indices if norm_out_indices is None else norm_out_indices)
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

        self.patch_embed = PatchEmbed(
            in_channels=in_channels, embed_dims=self.embed_dims, conv_type='Conv2d', kernel_size=patch_size,
            stride=patch_size, padding='corner', norm_cfg=norm_cfg)
        self.drop_after_pos = nn.Dropout(p=drop_rate)

        fused = set(self.fusion_blocks)
        # the masks depend on the padded size, not on the block: one bounded store for all blocks
        self.attn_mask_cache = LRUCache(attn_mask_cache_size)
        dpr = torch.linspace(0, drop_path_rate, sum(self.depths)).tolist()
        self.stages = ModuleList()
        for i, (depth, heads, dims) in enumerate(zip(self.depths, self.num_heads, self.stage_dims)):
            blocks = [
                FusionSwinBlock(
                    embed_dims=dims, num_heads=heads, feedforward_channels=int(mlp_ratio * dims),
                    window_size=window_size, shift=j % 2 == 1,
                    text_dims=text_dims if (i, j) in fused else None, i2t_query_norm=i2t_query_norm,
                    qkv_bias=qkv_bias, drop_rate=drop_rate, attn_drop_rate=attn_drop_rate,
                    drop_path=dpr[sum(self.depths[:i]) + j], use_sdpa=use_sdpa, norm_cfg=norm_cfg,
                    mask_cache=self.attn_mask_cache)
                for j in range(depth)
            ]
            downsample = None
            if i < self.num_stages - 1:
                downsample = PatchMerging(in_channels=dims, out_channels=2 * dims, norm_cfg=norm_cfg)
            self.stages.append(FusionSwinStage(blocks, downsample))
        for i in self.norm_out_indices:
            self.add_module(f'norm{i}', build_norm_layer(norm_cfg, self.stage_dims[i])[1])
        self._freeze_stages()

    # ------------------------------------------------------------------ construction helpers
    def _check_fusion_blocks(self) -> None:
        seen = set()
        order = {b: n for n, b in enumerate(self.block_order())}
        for stage, block in self.fusion_blocks:
            if not (0 <= stage < len(self.depths) and 0 <= block < self.depths[stage]):
                raise ValueError(f'fusion block (stage {stage}, block {block}) does not exist in a Swin with '
                                 f'depths {self.depths}')
            if (stage, block) in seen:
                raise ValueError(f'fusion block {(stage, block)} listed twice')
            seen.add((stage, block))
        positions = [order[b] for b in self.fusion_blocks]
        if positions != sorted(positions):
            raise ValueError(f'fusion_blocks must be listed in execution order, got {self.fusion_blocks}')

    def block_order(self) -> List[Tuple[int, int]]:
        """All (stage, block) pairs in execution order."""
        return list(self._block_order)

    def fused_block_dims(self) -> List[int]:
        """Image token width at each fused block, in fusion order (what the paired text layers attend to)."""
        return [self.stage_dims[stage] for stage, _ in self.fusion_blocks]

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            self.patch_embed.eval()
            for p in self.patch_embed.parameters():
                p.requires_grad = False
        for i in range(min(self.frozen_stages, self.num_stages)):
            modules = [self.stages[i]]
            if i in self.norm_out_indices:
                modules.append(getattr(self, f'norm{i}'))
            for m in modules:
                m.eval()
                for p in m.parameters():
                    p.requires_grad = False

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        return self

    def init_weights(self) -> None:
        """Swin's initialisation with the fusion gates at 0; with ``init_cfg=dict(type='Pretrained',
        checkpoint=...)`` Swin weights in the official, timm or mmpretrain layout (or ours) are loaded instead:
        every weight they have must fit, and what the model has beyond them (the image→text cross-attention) is
        listed in the log (:func:`fiber_mmdet.utils.unimodal_init.load_swin_pretrained`)."""
        pretrained = self.init_cfg is not None and self.init_cfg.get('type') == 'Pretrained'
        if self.init_cfg is None or pretrained:
            for m in self.modules():
                if isinstance(m, nn.Linear):
                    trunc_normal_(m.weight, std=.02)
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.LayerNorm):
                    nn.init.constant_(m.weight, 1.0)
                    nn.init.constant_(m.bias, 0)
            for m in self.modules():
                if isinstance(m, SDPAWindowMSA):
                    trunc_normal_(m.relative_position_bias_table, std=.02)
                elif isinstance(m, ImageTextCrossAttention):
                    nn.init.zeros_(m.gate)  # fusion starts switched off
            if pretrained:
                self._load_pretrained(self.init_cfg['checkpoint'])
        else:
            super().init_weights()

    def _load_pretrained(self, checkpoint: str) -> None:
        # Swin classification weights in the official, timm or mmpretrain layout (or ours); the optional
        # init_cfg key ``layout`` names it, else it is detected. The loaded, dropped and new weights are logged.
        from ...utils.unimodal_init import load_swin_pretrained
        load_swin_pretrained(self, checkpoint, self.init_cfg.get('layout', 'auto'))

    # ------------------------------------------------------------------ forward
    def _run_block(self, block: FusionSwinBlock, state: SwinState, text: Optional[Tensor] = None,
                   text_mask: Optional[Tensor] = None) -> Tensor:
        if self.with_cp and state.x.requires_grad:
            return cp.checkpoint(block, state.x, state.hw_shape, text, text_mask, use_reentrant=False)
        return block(state.x, state.hw_shape, text, text_mask)

    def _advance(self, state: SwinState, x: Tensor) -> None:
        """Store the output of the block at ``state.position``; finish the stage if it was its last block."""
        stage_idx, block_idx = self._block_order[state.position]
        state.x = x
        state.position += 1
        if block_idx == self.depths[stage_idx] - 1:
            if stage_idx in self.out_indices:
                out = x
                if stage_idx in self.norm_out_indices:
                    out = getattr(self, f'norm{stage_idx}')(out)
                H, W = state.hw_shape
                state.outs[stage_idx] = out.view(-1, H, W, out.shape[-1]).permute(0, 3, 1, 2).contiguous()
            downsample = self.stages[stage_idx].downsample
            if downsample is not None:
                state.x, state.hw_shape = downsample(state.x, state.hw_shape)

    def _blocks_from(self, position: int) -> Iterator[FusionSwinBlock]:
        for stage_idx, block_idx in self._block_order[position:]:
            yield self.stages[stage_idx].blocks[block_idx]

    def forward_image_only(self, x: Tensor) -> SwinState:
        """Run everything that does not depend on the text: the patch embedding and every block before the
        first fused block.

        Args:
            x (Tensor): (B, 3, H, W) images.

        Returns:
            SwinState: the state at the first fused block (or at the end if nothing is fused).
        """
        tokens, hw_shape = self.patch_embed(x)
        state = SwinState(self.drop_after_pos(tokens), tuple(hw_shape))
        for block in self._blocks_from(0):
            if block.is_fused:
                break
            self._advance(state, self._run_block(block, state))
        return state

    def forward_fused(self, state: SwinState, text: Optional[Tensor] = None, text_mask: Optional[Tensor] = None,
                      text_layer_fn: Optional[TextLayerFn] = None) -> Tuple[Tuple[Tensor, ...], Optional[Tensor]]:
        """Run the rest of the backbone from ``state``, updating image and text in parallel at fused blocks.

        At the k-th fused block both sides read the states from before step k:
        ``image' = block(image, text)`` and ``text' = text_layer_fn(k, text, image)`` (the raw, un-normed
        residual stream of the whole padded map, no image mask).

        Args:
            state (SwinState): from :meth:`forward_image_only` (not modified).
            text (Tensor, optional): (B, T, D) text states before the first fused layer.
            text_mask (Tensor, optional): (B, T) valid-token mask.
            text_layer_fn (callable, optional): runs the paired text layer.

        Returns:
            tuple: the outputs of ``out_indices`` as (B, C_i, H_i, W_i) tensors, and the final text states.
        """
        state = SwinState(state.x, state.hw_shape, state.position, dict(state.outs))
        step = 0
        for block in self._blocks_from(state.position):
            if block.is_fused and text is not None:
                image_tokens = state.x
                new_x = self._run_block(block, state, text, text_mask)
                if text_layer_fn is not None:
                    text = text_layer_fn(step, text, image_tokens)
                step += 1
            else:
                new_x = self._run_block(block, state)
            self._advance(state, new_x)
        return tuple(state.outs[i] for i in self.out_indices), text

    def forward(self, x: Tensor, text: Optional[Tensor] = None, text_mask: Optional[Tensor] = None,
                text_layer_fn: Optional[TextLayerFn] = None) -> Tuple[Tensor, ...]:
        """Image features; with ``text`` the fused blocks attend to it (the text itself is not updated unless
        ``text_layer_fn`` is given — use :meth:`forward_fused` to also get the updated text)."""
        outs, _ = self.forward_fused(self.forward_image_only(x), text, text_mask, text_layer_fn)
        return outs
