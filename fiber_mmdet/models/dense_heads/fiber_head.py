"""FIBER's language-aware DyHead: mmdet's GLIP head (no early fusion) made exact to the original."""
import copy
from typing import List, Optional

import torch
from mmcv.ops import batched_nms
from mmcv.ops.modulated_deform_conv import ModulatedDeformConv2d
from mmengine.config import ConfigDict
from mmengine.model import BaseModel
from mmengine.structures import InstanceData
from torch import Tensor

from mmdet.models.dense_heads.atss_head import ATSSHead
from mmdet.models.dense_heads.atss_vlfusion_head import (ATSSVLFusionHead, VLFusionModule,
                                                          convert_grounding_to_cls_scores)
from mmdet.registry import MODELS
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from ..layers.fp32_deform_conv import use_fp32_deform_convs


class FIBERFusionModule(VLFusionModule):
    """mmdet's DyHead tower + dot-product token head, built without any hub access (``lang_dim`` is given
    instead of read from a BERT config) and always without early fusion; its deformable convolutions always
    compute in float32, also under AMP (:class:`FP32ModulatedDeformConv2d`)."""

    def __init__(self, in_channels: int, feat_channels: int, num_base_priors: int, lang_dim: int,
                 num_dyhead_blocks: int = 6, use_dyrelu: bool = True, use_dyfuse: bool = True,
                 use_dcn: bool = True, use_checkpoint: bool = False, **kwargs) -> None:
        BaseModel.__init__(self, **kwargs)
        if use_dcn and num_dyhead_blocks > 0 and in_channels != feat_channels:
            # mmdet's tower (as GLIP's and FIBER's) gives the first block's deformable convolutions no offset
            # branch when the widths differ, so the first forward would fail deep inside the tower
            raise ValueError(
                f'bbox_head.use_dcn=True needs bbox_head.in_channels ({in_channels}) == bbox_head.feat_channels '
                f'({feat_channels}): with other widths the first DyHead block has deformable convolutions but no '
                'offsets. Set use_dcn=False, or make the FPN out_channels equal to feat_channels.')
        self.in_channels = in_channels
        self.feat_channels = feat_channels
        self.num_base_priors = num_base_priors
        self.early_fuse = False
        self.num_dyhead_blocks = num_dyhead_blocks
        self.use_dyrelu = use_dyrelu
        self.use_dyfuse = use_dyfuse
        self.use_dcn = use_dcn
        self.use_checkpoint = use_checkpoint
        self.lang_dim = lang_dim
        self._init_layers()
        use_fp32_deform_convs(self)  # float32 under AMP, as the original


@MODELS.register_module()
class FIBERHead(ATSSVLFusionHead):
    """ATSS head whose class logits are dot products between box features and caption tokens.

    The tower and the dot-product head are mmdet's (``VLFusionModule``); what differs from mmdet's
    ``ATSSVLFusionHead`` is what makes it exact to FIBER:

    * token targets are ``num_tokens`` wide (not ``feat_channels``); background anchors target the last token
      column (the original's "no object" token);
    * the normalisers are the original's: token and centerness losses by max(mean #positives over GPUs, 1),
      the box loss by the mean centerness-target sum; positives are the anchors ATSS matched,
      even when their box's positive-map row is empty;
    * post-processing: candidates by class score > ``score_thr`` (before centerness), the per-level top
      ``nms_pre`` ranked by class score × centerness, score √(class × centerness), class-wise NMS in the resized
      image (use ``nms=dict(type='nms', iou_threshold=0.6, offset=1)`` for the original's +1 IoU), then the
      rescale to the original image; boxes are NOT widened by +1 (metrics that need the +1 apply it);
    * a label→token map is required per image at test time (``token_positive_map``).

    Args:
        lang_dim (int): Text width (768 for roberta-base).
        num_tokens (int): Caption length in tokens (256).
        num_dyhead_blocks (int): DyHead blocks (6).
        use_dcn (bool): Modulated deformable convolutions in the tower (FIBER: True; plain 3x3 convolutions
            otherwise, e.g. for the CPU toy model, where they still cost 1.7x a step). On CPU tensors they run
            :func:`~fiber_mmdet.models.layers.modulated_deform_conv2d_cpu`, on CUDA mmcv's kernel.
        use_checkpoint (bool): Activation checkpointing in the tower.
        **kwargs: :class:`mmdet.models.dense_heads.ATSSHead` arguments.
    """

    def __init__(self,
                 *args,
                 lang_dim: int = 768,
                 num_tokens: int = 256,
                 num_dyhead_blocks: int = 6,
                 use_dcn: bool = True,
                 use_checkpoint: bool = False,
                 init_cfg=None,
                 **kwargs) -> None:
        ATSSHead.__init__(self, *args, **kwargs, init_cfg=init_cfg)
        self.num_tokens = num_tokens
        self.head = FIBERFusionModule(
            in_channels=self.in_channels,
            feat_channels=self.feat_channels,
            num_base_priors=self.num_base_priors,
            lang_dim=lang_dim,
            num_dyhead_blocks=num_dyhead_blocks,
            use_dcn=use_dcn,
            use_checkpoint=use_checkpoint)
        self.text_masks = None

    # ------------------------------------------------------------------ training
    def _get_targets_single(self,
                            flat_anchors: Tensor,
                            valid_flags: Tensor,
                            num_level_anchors: List[int],
                            gt_instances: InstanceData,
                            img_meta: dict,
                            gt_instances_ignore: Optional[InstanceData] = None,
                            unmap_outputs: bool = True) -> tuple:
        """ATSS targets of one image. Returns (anchors, token targets (A, T), label weights (A,),
        box targets (A, 4), box weights (A, 4), pos_inds, neg_inds, sampling result); anchors are returned in
        the original's inclusive-pixel form (``x2 - 1``)."""
        anchors = flat_anchors.clone()
        anchors[:, 2:] -= 1  # the original's anchors: [c - (S-1)/2, c + (S-1)/2]
        assign_result = self.assigner.assign(
            InstanceData(priors=anchors), num_level_anchors, gt_instances, gt_instances_ignore)
        sampling_result = self.sampler.sample(assign_result, InstanceData(priors=anchors), gt_instances)

        num_anchors = anchors.shape[0]
        bbox_targets = torch.zeros_like(anchors)
        bbox_weights = torch.zeros_like(anchors)
        num_tokens = self.text_masks.shape[-1]  # the batch's caption width: num_tokens, or fewer when trimmed
        labels = anchors.new_zeros((num_anchors, num_tokens), dtype=torch.float32)
        labels[:, -1] = 1.0  # background anchors: "no object" = the last token column
        label_weights = anchors.new_ones(num_anchors, dtype=torch.float)
        pos_inds, neg_inds = sampling_result.pos_inds, sampling_result.neg_inds
        if len(pos_inds) > 0:
            positive_maps = gt_instances.positive_maps
            if positive_maps.shape[-1] != num_tokens:
                raise ValueError(f'positive maps are {positive_maps.shape[-1]} tokens wide, the captions '
                                 f'{num_tokens}')
            if self.reg_decoded_bbox:
                bbox_targets[pos_inds] = sampling_result.pos_gt_bboxes
            else:
                pos_priors = sampling_result.pos_priors.clone()
                pos_priors[:, 2:] += 1
                bbox_targets[pos_inds] = self.bbox_coder.encode(pos_priors, sampling_result.pos_gt_bboxes)
            bbox_weights[pos_inds] = 1.0
            labels[pos_inds] = (positive_maps[sampling_result.pos_assigned_gt_inds] > 0).float()
        return (anchors, labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds,
                sampling_result)

    # Target assignment and the losses are per-image, data-dependent work (ATSS' candidate selection, positive
    # indices, .item() normalisers): under torch.compile they run eagerly, as one boundary instead of dozens of
    # graph breaks, and the compiled graph ends with the head's outputs.
    @torch.compiler.disable
    def loss_by_feat(self,
                     cls_scores: List[Tensor],
                     bbox_preds: List[Tensor],
                     centernesses: List[Tensor],
                     batch_gt_instances: InstanceList,
                     batch_img_metas: List[dict],
                     batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        """Losses from per-level token logits (B, H*W*A, num_tokens), box deltas (B, 4A, H, W) and centerness
        logits (B, A, H, W). Needs ``self.text_masks`` (B, T) set by :meth:`loss` (T: the captions' width).

        Computed in float32 with autocast off, as the original does under AMP: the head outputs are cast up."""
        with torch.autocast(device_type=cls_scores[0].device.type, enabled=False):
            return self._loss_by_feat_fp32([s.float() for s in cls_scores], [p.float() for p in bbox_preds],
                                           [c.float() for c in centernesses], batch_gt_instances,
                                           batch_img_metas, batch_gt_instances_ignore)

    def _loss_by_feat_fp32(self, cls_scores: List[Tensor], bbox_preds: List[Tensor], centernesses: List[Tensor],
                           batch_gt_instances: InstanceList, batch_img_metas: List[dict],
                           batch_gt_instances_ignore: OptInstanceList = None) -> dict:
        if not self.reg_decoded_bbox:
            raise ValueError('FIBERHead computes the GIoU loss on decoded boxes: set reg_decoded_bbox=True')
        featmap_sizes = [featmap.size()[-2:] for featmap in bbox_preds]
        device = cls_scores[0].device
        anchor_list, valid_flag_list = self.get_anchors(featmap_sizes, batch_img_metas, device=device)
        (anchor_list, labels_list, label_weights_list, bbox_targets_list, bbox_weights_list,
         _) = self.get_targets(anchor_list, valid_flag_list, batch_gt_instances, batch_img_metas,
                               batch_gt_instances_ignore=batch_gt_instances_ignore)
        B = cls_scores[0].shape[0]
        anchors = torch.cat(anchor_list, dim=1).reshape(-1, 4)
        labels = torch.cat(labels_list, dim=1)  # (B, A, T)
        label_weights = torch.cat(label_weights_list, dim=1)  # (B, A)
        bbox_targets = torch.cat(bbox_targets_list, dim=1).reshape(-1, 4)
        pos = torch.cat(bbox_weights_list, dim=1)[..., 0].reshape(-1) > 0
        cls_scores = torch.cat(cls_scores, dim=1)  # (B, A, T)
        bbox_preds = torch.cat([p.permute(0, 2, 3, 1).reshape(B, -1, 4) for p in bbox_preds], 1).reshape(-1, 4)
        centernesses = torch.cat([c.permute(0, 2, 3, 1).reshape(B, -1) for c in centernesses], 1).reshape(-1)

        num_pos = reduce_mean(pos.sum().float()).clamp(min=1.0).item()
        # the token loss only sees real (non-pad) caption tokens
        text_mask = (self.text_masks > 0).unsqueeze(1).expand_as(cls_scores)
        loss_cls = self.loss_cls(
            cls_scores[text_mask], labels[text_mask],
            label_weights.unsqueeze(-1).expand_as(cls_scores)[text_mask], avg_factor=num_pos)

        pos_anchors = anchors[pos]
        pos_targets = bbox_targets[pos]
        centerness_targets = self.centerness_target(pos_anchors, pos_targets)  # (P,), empty without positives
        # Every rank joins this all-reduce, positives or not (an empty sum is 0): a rank that skipped it would
        # leave the others waiting in a collective that never completes (a DDP hang).
        ctr_sum = reduce_mean(centerness_targets.sum().detach()).item()
        if pos.any():
            exclusive = pos_anchors.clone()
            exclusive[:, 2:] += 1  # the GLIP decoder takes x2-exclusive anchors
            decoded = self.bbox_coder.decode(exclusive, bbox_preds[pos])
            if ctr_sum > 0:
                loss_bbox = self.loss_bbox(decoded, pos_targets, weight=centerness_targets, avg_factor=ctr_sum)
            else:
                loss_bbox = self.loss_bbox(decoded, pos_targets, reduction_override='sum')
            loss_centerness = self.loss_centerness(centernesses[pos], centerness_targets, avg_factor=num_pos)
        else:
            loss_bbox = bbox_preds.sum() * 0
            loss_centerness = centernesses.sum() * 0
        return dict(loss_cls=loss_cls, loss_bbox=loss_bbox, loss_centerness=loss_centerness)

    # ------------------------------------------------------------------ inference
    @torch.compiler.disable  # thresholding, top-k and NMS keep data-dependent sizes: eager under torch.compile
    def predict_by_feat(self,
                        cls_logits: List[Tensor],
                        bbox_preds: List[Tensor],
                        score_factors: List[Tensor],
                        batch_img_metas: Optional[List[dict]] = None,
                        batch_token_positive_maps: Optional[List[dict]] = None,
                        cfg: Optional[ConfigDict] = None,
                        rescale: bool = False,
                        with_nms: bool = True) -> InstanceList:
        """Detections per image from per-level token logits (B, H*W*A, num_tokens), box deltas (B, 4A, H, W) and
        centerness logits (B, A, H, W).

        Post-processing runs in float32 with autocast off whatever dtype the head computed in: mmdet generates
        the anchors in the outputs' dtype, and in float16 / bfloat16 anchors and boxes near 1333 px are
        quantised to 1 / 8 px, ``batched_nms``' per-class offset (label × max coordinate) overflows float16
        beyond ~49 labels, and mmcv's NMS takes no half-precision boxes. Outputs are float32."""
        with torch.autocast(device_type=bbox_preds[0].device.type, enabled=False):
            return super().predict_by_feat(
                [c.float() for c in cls_logits], [b.float() for b in bbox_preds],
                [s.float() for s in score_factors], batch_img_metas=batch_img_metas,
                batch_token_positive_maps=batch_token_positive_maps, cfg=cfg, rescale=rescale,
                with_nms=with_nms)

    def _predict_by_feat_single(self,
                                bbox_pred_list: List[Tensor],
                                score_factor_list: List[Tensor],
                                cls_logit_list: List[Tensor],
                                mlvl_priors: List[Tensor],
                                token_positive_maps: dict,
                                img_meta: dict,
                                cfg: ConfigDict,
                                rescale: bool = True,
                                with_nms: bool = True) -> InstanceData:
        """Detections of one image. Labels are 0-based: label ``j`` is key ``j + 1`` of
        ``token_positive_maps``; boxes are xyxy in original-image pixels when ``rescale``."""
        if not token_positive_maps:
            raise ValueError('FIBERHead needs a label→token map (token_positive_map) for every image')
        cfg = copy.deepcopy(self.test_cfg if cfg is None else cfg)
        nms_pre = cfg.get('nms_pre', -1)
        score_thr = cfg.get('score_thr', 0.)
        boxes, scores, labels = [], [], []
        for bbox_pred, ctr, logits, priors in zip(bbox_pred_list, score_factor_list, cls_logit_list,
                                                  mlvl_priors):
            bbox_pred = bbox_pred.permute(1, 2, 0).reshape(-1, 4)
            ctr = ctr.permute(1, 2, 0).reshape(-1).sigmoid()
            class_scores = convert_grounding_to_cls_scores(logits.sigmoid()[None], [token_positive_maps])[0]
            anchor_idx, label = torch.nonzero(class_scores > score_thr, as_tuple=True)
            class_score = class_scores[anchor_idx, label]
            if 0 < nms_pre < anchor_idx.numel():
                keep = (class_score * ctr[anchor_idx]).topk(nms_pre).indices
                anchor_idx, label, class_score = anchor_idx[keep], label[keep], class_score[keep]
            boxes.append(self.bbox_coder.decode(priors[anchor_idx], bbox_pred[anchor_idx],
                                                max_shape=img_meta['img_shape']))
            scores.append(torch.sqrt(class_score * ctr[anchor_idx]))
            labels.append(label)
        results = InstanceData()
        results.bboxes = torch.cat(boxes)
        results.scores = torch.cat(scores)
        results.labels = torch.cat(labels)

        if with_nms and results.bboxes.numel() > 0:
            _, keep = batched_nms(results.bboxes, results.scores, results.labels, cfg['nms'])
            results = results[keep[:cfg.get('max_per_img', 100)]]
        if rescale:
            scale_factor = results.bboxes.new_tensor(img_meta['scale_factor']).repeat(2)
            results.bboxes = results.bboxes / scale_factor
        return results
