"""FIBER as one tensor graph for ONNX: image and tokens in, decoded boxes and scores out.

Everything up to the box decoding runs inside the graph (backbone with its fused text layers, FPN, DyHead,
anchors, ATSS decoding clipped to each image's valid size); what depends on the prompt's label→token map
(class scores from token scores, thresholds, the per-level top-k, class-wise NMS, the rescale to the original
image) runs in the runtime (:mod:`fiber_mmdet.runtime.postprocess`), so one graph serves any prompt.
"""
from typing import List, Sequence, Tuple

import torch
import torch.nn as nn
from torch import Tensor

from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox_glip


class FIBERGraph(nn.Module):
    """The free-text graph of a FIBER detector (eval mode, float32).

    Inputs: ``image`` (B, 3, H, W) normalised and padded as the model's data preprocessor does; ``img_hw``
    (B, 2) int64 valid (resized, unpadded) height and width; ``input_ids`` and ``attention_mask`` (B, T) int64,
    one prompt per row.

    Outputs: ``boxes`` (B, N, 4) xyxy in resized-image pixels, clipped to ``img_hw``; ``token_scores``
    (B, N, T) sigmoid of the box–token logits; ``centerness`` (B, N) sigmoid; ``level_sizes`` (L,) int64,
    anchors per FPN level (N is their sum, levels in order).
    """

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        # the wrapper is in eval mode too: the exporter puts a module back into ITS mode afterwards, and a
        # wrapper left in training mode would switch the detector to training (dropout, DropBlock) on the way out
        self.eval()

    def head_outputs(self, visual: Sequence[Tensor], language: dict,
                     img_hw: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Decoded boxes (B, N, 4), token logits (B, N, T), centerness logits (B, N) and anchors per level."""
        head = self.detector.bbox_head
        cls_logits, bbox_preds, centerness = head(visual, language)
        batch = bbox_preds[0].shape[0]
        sizes = [b.shape[-2:] for b in bbox_preds]
        priors = head.prior_generator.grid_priors(sizes, dtype=bbox_preds[0].dtype, device=bbox_preds[0].device)
        deltas = torch.cat([b.permute(0, 2, 3, 1).reshape(batch, -1, 4) for b in bbox_preds], dim=1)
        ctr = torch.cat([c.permute(0, 2, 3, 1).reshape(batch, -1) for c in centerness], dim=1)
        logits = torch.cat(cls_logits, dim=1)
        anchors = torch.cat(priors, dim=0)
        coder = head.bbox_coder
        # the coder's own decoding (its wh_ratio_clip default, centre clamp), batched as rows; the clip to each
        # image's valid size follows, as the coder does with max_shape (to W - 1, H - 1)
        boxes = delta2bbox_glip(anchors.repeat(batch, 1), deltas.reshape(-1, 4), coder.means, coder.stds,
                                max_shape=None, clip_border=False, add_ctr_clamp=coder.add_ctr_clamp,
                                ctr_clamp=coder.ctr_clamp)
        boxes = boxes.reshape(batch, -1, 4)
        if coder.clip_border:
            hw = img_hw.to(boxes.dtype)
            limit = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=1).unsqueeze(1) - 1
            boxes = torch.minimum(boxes.clamp(min=0), limit)
        level_sizes = torch.stack([torch._shape_as_tensor(p)[0] for p in priors])
        return boxes, logits, ctr, level_sizes

    def forward(self, image: Tensor, img_hw: Tensor, input_ids: Tensor,
                attention_mask: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        visual, language = self.detector.extract_feat(image, input_ids, attention_mask)
        boxes, logits, ctr, level_sizes = self.head_outputs(visual, language, img_hw)
        return boxes, logits.sigmoid(), ctr.sigmoid(), level_sizes


class FIBERFixedVocabularyGraph(FIBERGraph):
    """A graph with its prompts folded in: the text-free text layers of each prompt are constants, so the graph
    takes only ``image`` and ``img_hw``.

    Outputs: ``boxes`` (B, P, N, 4) and ``centerness`` (B, P, N) per prompt (the fused backbone sees the text,
    so both depend on it), ``class_scores`` (B, P, N, C) the mean token score of each of a prompt's labels
    (−1 where a prompt has fewer than C labels, below any threshold), and ``level_sizes`` (L,).

    Args:
        detector: the FIBER model (eval mode).
        input_ids: (P, T) token ids of the P prompts.
        attention_mask: (P, T).
        label_tokens: per prompt, its labels' token columns (label ``j`` of prompt ``p`` is
            ``label_tokens[p][j]``).
    """

    def __init__(self, detector: nn.Module, input_ids: Tensor, attention_mask: Tensor,
                 label_tokens: List[List[List[int]]]) -> None:
        super().__init__(detector)
        with torch.no_grad():
            text = detector.language_model.forward_text_only(input_ids, attention_mask)
        self.register_buffer('text', text, persistent=False)
        self.register_buffer('attention_mask', attention_mask, persistent=False)
        width = max(len(labels) for labels in label_tokens)
        # class score = token scores @ averaging matrix: column j averages label j's tokens
        average = torch.zeros(len(label_tokens), input_ids.shape[1], width)
        for p, labels in enumerate(label_tokens):
            for j, tokens in enumerate(labels):
                average[p, tokens, j] = 1.0 / len(tokens)
        self.register_buffer('average', average, persistent=False)
        unused = torch.tensor([[0.0 if j < len(labels) else -1.0 for j in range(width)] for labels in label_tokens])
        self.register_buffer('unused', unused, persistent=False)

    def forward(self, image: Tensor, img_hw: Tensor) -> Tuple[Tensor, Tensor, Tensor, Tensor]:  # type: ignore
        detector = self.detector
        batch = image.shape[0]
        state = detector.backbone.forward_image_only(image)
        boxes, scores, ctrs = [], [], []
        for p in range(self.text.shape[0]):
            text = self.text[p:p + 1].expand(batch, -1, -1)
            mask = self.attention_mask[p:p + 1].expand(batch, -1)
            visual, language = detector.fuse(state, text, mask)
            box, logits, ctr, level_sizes = self.head_outputs(visual, language, img_hw)
            score = torch.matmul(logits.sigmoid(), self.average[p]) + self.unused[p]
            boxes.append(box)
            scores.append(score)
            ctrs.append(ctr.sigmoid())
        return torch.stack(boxes, 1), torch.stack(scores, 1), torch.stack(ctrs, 1), level_sizes
