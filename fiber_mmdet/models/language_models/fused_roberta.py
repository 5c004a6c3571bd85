"""FIBER's text side: RoBERTa whose top layers cross-attend to the image tokens.

The layer code is ours (transformers' internals changed in 4.56 and 5.x); parameter names follow
transformers' ``RobertaModel`` so ``roberta-base`` weights load from the hub name or a local directory.
transformers is used for the configuration, the tokenizer and the weight files only.
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from torch import Tensor

from mmdet.registry import MODELS
from ..layers.softmax_attention import softmax_attention


class RobertaEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout (RoBERTa positions: pads use row
    ``pad_token_id``, real tokens count up from ``pad_token_id + 1``)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.padding_idx = config.pad_token_id
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=self.padding_idx)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size,
                                                padding_idx=self.padding_idx)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_ids: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, D)."""
        not_pad = input_ids.ne(self.padding_idx).long()
        position_ids = torch.cumsum(not_pad, dim=1) * not_pad + self.padding_idx
        token_type = self.token_type_embeddings.weight[0]
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids) + token_type
        return self.dropout(self.LayerNorm(x))


class RobertaMultiHeadAttention(nn.Module):
    """``query`` / ``key`` / ``value`` projections and scaled dot-product attention (no output projection).

    Args:
        hidden_size (int): Query width and output width.
        num_heads (int): Heads.
        kv_dims (int): Width of the key/value input (``hidden_size`` for self-attention, the image width for
            the text→image cross-attention).
        attn_drop (float): Dropout on the attention weights.
    """

    def __init__(self, hidden_size: int, num_heads: int, kv_dims: int, attn_drop: float = 0.) -> None:
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f'hidden size {hidden_size} is not divisible by {num_heads} heads')
        self.num_heads = num_heads
        self.head_dims = hidden_size // num_heads
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(kv_dims, hidden_size)
        self.value = nn.Linear(kv_dims, hidden_size)
        self.attn_drop = attn_drop

    def _split(self, x: Tensor) -> Tensor:
        B, N, _ = x.shape
        return x.view(B, N, self.num_heads, self.head_dims).transpose(1, 2)

    def forward(self, x: Tensor, kv: Optional[Tensor] = None, valid: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            x (Tensor): (B, T, D) queries.
            kv (Tensor, optional): (B, S, D_kv) keys/values; ``x`` itself if None.
            valid (Tensor, optional): bool, broadcastable to (B, heads, T, S); False = no attention.

        Returns:
            Tensor: (B, T, D) attended values, heads merged.
        """
        kv = x if kv is None else kv
        q, k, v = self._split(self.query(x)), self._split(self.key(kv)), self._split(self.value(kv))
        # RoBERTa's attention dropout would make SDPA keep three (B, heads, T, S) tensors on the CPU
        out = softmax_attention(q, k, v, attn_mask=valid, dropout_p=self.attn_drop if self.training else 0.)
        B, _, T, _ = out.shape
        return out.transpose(1, 2).reshape(B, T, -1)


class RobertaSubLayerOutput(nn.Module):
    """``dense`` + dropout; with ``norm=True`` also ``LayerNorm(x + residual)`` (transformers' layout)."""

    def __init__(self, in_dims: int, hidden_size: int, dropout: float, eps: float, norm: bool = True) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dims, hidden_size)
        self.dropout = nn.Dropout(dropout)
        if norm:
            self.LayerNorm = nn.LayerNorm(hidden_size, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.dense(x))


class RobertaAttentionBlock(nn.Module):
    """``self`` (multi-head attention) + ``output`` (projection; its LayerNorm is applied by the layer)."""

    def __init__(self, config, kv_dims: int, with_norm: bool) -> None:
        super().__init__()
        self.self = RobertaMultiHeadAttention(config.hidden_size, config.num_attention_heads, kv_dims,
                                              config.attention_probs_dropout_prob)
        self.output = RobertaSubLayerOutput(config.hidden_size, config.hidden_size, config.hidden_dropout_prob,
                                            config.layer_norm_eps, norm=with_norm)


class RobertaIntermediate(nn.Module):

    def __init__(self, config) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        if config.hidden_act != 'gelu':
            raise ValueError(f'only hidden_act="gelu" is supported, got {config.hidden_act!r}')

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(self.dense(x))


class FusedRobertaLayer(nn.Module):
    """A post-LN RoBERTa layer; with ``image_dims`` it also attends to image tokens (FIBER).

    ``s = SelfAttn(h)``; fused: ``c = CrossAttn(query=s, key/value=image)`` (no LayerNorm of its own, no image
    mask) and ``h1 = LN(h + s + gate * c)``; otherwise ``h1 = LN(h + s)``; then
    ``h2 = LN(h1 + FFN(h1))``. The gate ``alpha_t2i`` starts at 0.
    """

    def __init__(self, config, image_dims: Optional[int] = None) -> None:
        super().__init__()
        self.attention = RobertaAttentionBlock(config, config.hidden_size, with_norm=True)
        self.intermediate = RobertaIntermediate(config)
        self.output = RobertaSubLayerOutput(config.intermediate_size, config.hidden_size,
                                            config.hidden_dropout_prob, config.layer_norm_eps)
        self.image_dims = image_dims
        if image_dims is not None:
            self.crossattention_t2i = RobertaAttentionBlock(config, image_dims, with_norm=False)
            self.alpha_t2i = nn.Parameter(torch.zeros(1))

    def forward(self, h: Tensor, valid: Tensor, image_tokens: Optional[Tensor] = None) -> Tensor:
        """
        Args:
            h (Tensor): (B, T, D) text states.
            valid (Tensor): (B, 1, 1, T) bool, True for real (non-pad) tokens.
            image_tokens (Tensor, optional): (B, L, C_img) raw image residual stream (fused layers).
        """
        s = self.attention.output(self.attention.self(h, valid=valid))
        x = h + s
        if image_tokens is not None:
            if self.image_dims is None:
                raise RuntimeError('this text layer has no cross-attention but image tokens were given')
            c = self.crossattention_t2i.output(self.crossattention_t2i.self(s, kv=image_tokens))
            x = x + self.alpha_t2i * c
        h1 = self.attention.output.LayerNorm(x)
        return self.output.LayerNorm(h1 + self.output(self.intermediate(h1)))


class FusedRobertaModel(nn.Module):
    """``embeddings`` + ``encoder.layer.{i}``: the state-dict layout of transformers' ``RobertaModel``
    (without pooler) plus ``crossattention_t2i`` / ``alpha_t2i`` in the fused layers."""

    def __init__(self, config, fused_layers: Sequence[int], image_dims: Sequence[int]) -> None:
        super().__init__()
        self.config = config
        self.embeddings = RobertaEmbeddings(config)
        kv = dict(zip(fused_layers, image_dims))
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            [FusedRobertaLayer(config, kv.get(i)) for i in range(config.num_hidden_layers)])


@MODELS.register_module()
class FusedRoberta(BaseModel):
    """FIBER's RoBERTa text encoder with cross-attention to the image in its top layers.

    It keeps mmdet's language-model contract (``tokenizer``, ``max_tokens``, ``pad_to_max``; ``forward``
    returns ``{'hidden', 'embedded', 'masks'}``) and exposes the pieces the fusion needs:
    :meth:`tokenize`, :meth:`forward_text_only` (embeddings and the layers before the first fused layer),
    :meth:`forward_fused_layer` (the k-th fused layer) and :meth:`language_dict`.

    Args:
        name (str, optional): transformers name or local directory of a RoBERTa model (``roberta-base``):
            its ``config.json`` defines the sizes, its weights are loaded when ``load_pretrained``.
        config (dict, optional): ``RobertaConfig`` fields, applied on top of ``name``'s config (or alone, to
            build a model without any files, e.g. small test models).
        tokenizer (str, optional): tokenizer name or directory; defaults to ``name``. None with no ``name``:
            the model only accepts token ids.
        load_pretrained (bool): load ``name``'s weights (the cross-attention layers stay newly initialised).
        max_tokens (int): caption length in tokens (FIBER: 256, ``<s>`` and ``</s>`` included).
        pad_to_max (bool): always pad to ``max_tokens`` (FIBER does; the text→image outputs do not depend on
            it, but positive-map widths do).
        fused_layers (sequence[int]): consecutive text layers that cross-attend to the image, in fusion order
            (FIBER-B: 6..11).
        image_dims (sequence[int]): image token width each fused layer attends to (FIBER-B:
            512 ×4, 1024 ×2).
    """

    def __init__(self,
                 name: Optional[str] = 'roberta-base',
                 config: Optional[dict] = None,
                 tokenizer: Optional[str] = None,
                 load_pretrained: bool = True,
                 max_tokens: int = 256,
                 pad_to_max: bool = True,
                 fused_layers: Sequence[int] = (6, 7, 8, 9, 10, 11),
                 image_dims: Sequence[int] = (512, 512, 512, 512, 1024, 1024),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        from transformers import RobertaConfig
        if name is None and config is None:
            raise ValueError('FusedRoberta needs a model `name` (hub name or directory) or a `config` dict')
        cfg = RobertaConfig.from_pretrained(name) if name is not None else RobertaConfig()
        for key, value in (config or {}).items():
            setattr(cfg, key, value)
        self.fused_layers = [int(i) for i in fused_layers]
        self.image_dims = [int(d) for d in image_dims]
        self._check_fusion(cfg)
        self.max_tokens = max_tokens
        self.pad_to_max = pad_to_max
        self.model = FusedRobertaModel(cfg, self.fused_layers, self.image_dims)
        self._init_new_weights()
        tokenizer = tokenizer if tokenizer is not None else name
        self.tokenizer = None
        if tokenizer is not None:
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer)
            self._check_vocabulary(tokenizer)
        if name is not None and load_pretrained:
            self.load_roberta_weights(name)

    # ------------------------------------------------------------------ construction
    def _check_fusion(self, cfg) -> None:
        n = cfg.num_hidden_layers
        if len(self.fused_layers) != len(self.image_dims):
            raise ValueError(f'fused_layers {self.fused_layers} and image_dims {self.image_dims} differ in length')
        if self.fused_layers and (self.fused_layers != list(range(self.fused_layers[0],
                                                                  self.fused_layers[0] + len(self.fused_layers)))
                                  or not 0 <= self.fused_layers[0] or self.fused_layers[-1] >= n):
            raise ValueError(f'fused_layers must be consecutive text layers within 0..{n - 1}, '
                             f'got {self.fused_layers}')

    def _check_vocabulary(self, source: str) -> None:
        """Every token id the tokenizer can produce must have a row in the embedding table (else a bare
        ``IndexError`` deep in the first forward)."""
        num_ids = len(self.tokenizer)
        rows = self.config.vocab_size
        if num_ids > rows:
            raise ValueError(f'the tokenizer {source!r} has {num_ids} token ids but the text model\'s embedding '
                             f'table has {rows} rows (language_model.config.vocab_size): use the tokenizer the '
                             f'model was built for, or set vocab_size >= {num_ids}')

    @property
    def config(self):
        return self.model.config

    @property
    def first_fused_layer(self) -> int:
        return self.fused_layers[0] if self.fused_layers else self.config.num_hidden_layers

    def _init_new_weights(self) -> None:
        """transformers' RoBERTa initialisation (normal(0, initializer_range), LayerNorm 1/0); gates at 0."""
        std = self.config.initializer_range
        for m in self.model.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=std)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
                if isinstance(m, nn.Embedding) and m.padding_idx is not None:
                    nn.init.zeros_(m.weight[m.padding_idx])
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, FusedRobertaLayer) and m.image_dims is not None:
                nn.init.zeros_(m.alpha_t2i)

    def load_roberta_weights(self, name: str) -> None:
        """Load transformers RoBERTa weights (hub name or directory). Every RoBERTa weight must be found; only
        the new cross-attention parameters may stay as initialised; the file's keys that are not loaded (heads,
        pooler) are logged by name (:func:`fiber_mmdet.utils.unimodal_init.load_roberta_pretrained`)."""
        from ...utils.unimodal_init import load_roberta_pretrained
        load_roberta_pretrained(self.model, name)

    # ------------------------------------------------------------------ text
    def tokenize(self, captions: Union[str, List[str]], device: Optional[torch.device] = None,
                 allow_truncation: bool = False, pad_to_max: Optional[bool] = None, spare_pad: int = 0):
        """Tokenise captions to ``max_tokens`` (padded when ``pad_to_max``).

        Args:
            captions: one caption or a list.
            device: where to put the tensors.
            allow_truncation: truncate captions that are too long, with a logged warning (training data);
                otherwise they are an error.
            pad_to_max: pad to ``max_tokens`` (True) or to the longest caption (False); None: the model's
                ``pad_to_max``.
            spare_pad: without ``pad_to_max``, this many padding columns after the longest caption (at most up to
                ``max_tokens``); training keeps one, where FIBER's background anchors target their token.

        Raises:
            ValueError: a caption needs more than ``max_tokens`` tokens and ``allow_truncation`` is False
                (FIBER never truncates silently; split long class lists into chunks instead).
        """
        if self.tokenizer is None:
            raise RuntimeError('FusedRoberta was built without a tokenizer; pass `tokenizer` or `name`')
        captions = [captions] if isinstance(captions, str) else list(captions)
        lengths = [len(ids) for ids in self.tokenizer(captions, add_special_tokens=True)['input_ids']]
        too_long = [(i, n) for i, n in enumerate(lengths) if n > self.max_tokens]
        if too_long and allow_truncation:
            MMLogger.get_current_instance().warning(
                f'{len(too_long)} caption(s) truncated to {self.max_tokens} tokens (longest: '
                f'{max(n for _, n in too_long)} tokens)')
        elif too_long:
            i, n = too_long[0]
            raise ValueError(f'{len(too_long)} caption(s) do not fit in {self.max_tokens} tokens; caption {i} '
                             f'needs {n} tokens: {captions[i][:80]!r}... Use fewer classes per prompt '
                             f'(test_cfg.chunked_size) or a shorter caption.')
        to_max = self.pad_to_max if pad_to_max is None else pad_to_max
        width = self.max_tokens if to_max else min(self.max_tokens, max(lengths) + spare_pad)
        tokenized = self.tokenizer(
            captions, max_length=width, padding='max_length', truncation=True, return_special_tokens_mask=True,
            return_tensors='pt')
        if device is not None:
            tokenized = tokenized.to(device)
        return tokenized

    @staticmethod
    def _valid(attention_mask: Tensor) -> Tensor:
        return (attention_mask > 0).view(attention_mask.shape[0], 1, 1, -1)

    def forward_text_only(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Embeddings and the layers before the first fused layer: everything that does not see the image.

        Args:
            input_ids (Tensor): (B, T) token ids.
            attention_mask (Tensor): (B, T), 1 for real tokens.

        Returns:
            Tensor: (B, T, D) text states.
        """
        h = self.model.embeddings(input_ids)
        valid = self._valid(attention_mask)
        for layer in self.model.encoder.layer[:self.first_fused_layer]:
            h = layer(h, valid)
        return h

    def forward_fused_layer(self, step: int, hidden: Tensor, attention_mask: Tensor,
                            image_tokens: Optional[Tensor]) -> Tensor:
        """Run the ``step``-th fused layer; image tokens (B, L, C_step) are attended without a mask."""
        layer = self.model.encoder.layer[self.fused_layers[step]]
        return layer(hidden, self._valid(attention_mask), image_tokens)

    def forward_after_fusion(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """Text-only layers after the last fused layer (none in FIBER)."""
        start = self.fused_layers[-1] + 1 if self.fused_layers else self.config.num_hidden_layers
        valid = self._valid(attention_mask)
        for layer in self.model.encoder.layer[start:]:
            hidden = layer(hidden, valid)
        return hidden

    @staticmethod
    def language_dict(hidden: Tensor, attention_mask: Tensor) -> Dict[str, Tensor]:
        """mmdet's language-feature contract: ``hidden`` (B, T, D), ``embedded`` (pads zeroed), ``masks``."""
        return dict(hidden=hidden, embedded=hidden * attention_mask.unsqueeze(-1).to(hidden.dtype),
                    masks=attention_mask)

    def forward(self, captions: Sequence[str], **kwargs) -> Dict[str, Tensor]:
        """Encode captions WITHOUT the image (fused layers act as plain layers). The FIBER detector runs the
        fused path through the backbone instead."""
        tok = self.tokenize(list(captions), device=self.model.embeddings.word_embeddings.weight.device)
        h = self.forward_text_only(tok['input_ids'], tok['attention_mask'])
        valid = self._valid(tok['attention_mask'])
        for i in self.fused_layers:
            h = self.model.encoder.layer[i](h, valid)
        h = self.forward_after_fusion(h, tok['attention_mask'])
        return self.language_dict(h, tok['attention_mask'])
