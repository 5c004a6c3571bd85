"""Build the ``fiber_mmdet`` model config equivalent to a reference fixture's ``config.json``.

The fixtures in ``shared/fixtures/reference/`` describe small models run with the original FIBER code
(see their README); this translates their settings into our registry configs, failing loudly on any setting
we do not implement.
"""
import math
from typing import Any, Dict


def _require(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f'reference setting not supported: {what}')


def model_cfg_from_reference(ref: Dict[str, Any]) -> dict:
    """``config.json`` (dict) -> FIBER model config dict (backbone outputs all 4 stages for comparison)."""
    swin, text, fpn, head = ref['swin'], ref['text'], ref['fpn'], ref['head']
    anchors, coder, loss, post = ref['anchors'], ref['box_coder'], ref['loss'], ref['postprocess']
    _require(swin['attn_mask_value'] == -100.0, f"attn_mask_value {swin['attn_mask_value']}")
    _require(swin['shift_size'] == swin['window_size'] // 2, 'shift size other than window // 2')
    _require(not swin['ape'] and swin['patch_norm'], 'absolute position embedding / no patch norm')
    _require(head['fuse_type'] == 'NONE' and not head['early_fuse'], 'early fusion in the head')
    _require(anchors['aspect_ratios'] == [1.0] and anchors['scales_per_octave'] == 1, 'several anchors')
    _require(post['score_agg'] == 'MEAN', f"score aggregation {post['score_agg']}")
    _require(post['mdetr_style_aggregate_class_num'] == -1, 'MDETR-style aggregation')
    _require(not loss['use_classification_loss'], 'classification (cls_logits) loss')
    weights = coder['weights']
    _require(weights[0] == weights[1] and weights[2] == weights[3], f'box coder weights {weights}')
    _require(math.isclose(coder['clamp_dwdh'], math.log(1000. / 16)), 'box clamp other than log(1000/16)')

    fusion_blocks = sorted((int(layer.split('.')[1]), int(b)) for layer, blocks in swin['fused_blocks'].items()
                           for b in blocks)
    dims = swin['stage_dims']
    _require(dims == [swin['embed_dim'] * 2**i for i in range(len(dims))], f'stage widths {dims}')
    image_dims = [dims[stage] for stage, _ in fusion_blocks]
    fused_layers = [int(i) for i in text['fused_layers']]
    _require(fused_layers[0] == len(text['pre_fusion_layers']), 'text layers between pre-fusion and fusion')
    norm_out = [i for i, n in enumerate(swin['out_norms']) if n == 'LayerNorm']
    _require(all(n in ('Identity', 'LayerNorm') for n in swin['out_norms']), f"out norms {swin['out_norms']}")
    fpn_in = fpn['in_channels']
    start_level = next(i for i, c in enumerate(fpn_in) if c > 0)
    strides = anchors['strides']
    octave = anchors['sizes'][0] / strides[0]
    _require(all(s == octave * st for s, st in zip(anchors['sizes'], strides)), 'anchor sizes not 8x strides')
    num_tokens = int(text['max_query_len'])

    return dict(
        type='FIBER',
        data_preprocessor=dict(type='DetDataPreprocessor', mean=[103.53, 116.28, 123.675],
                               std=[57.375, 57.12, 58.395], bgr_to_rgb=False,
                               pad_size_divisor=ref['input']['size_divisibility']),
        backbone=dict(
            type='FusionSwinTransformer',
            arch=dict(embed_dims=swin['embed_dim'], depths=swin['depths'], num_heads=swin['num_heads']),
            patch_size=swin['patch_size'], in_channels=swin['in_chans'], window_size=swin['window_size'],
            mlp_ratio=swin['mlp_ratio'], qkv_bias=swin['qkv_bias'], drop_path_rate=swin['drop_path_rate'],
            text_dims=text['hidden_size'], fusion_blocks=fusion_blocks, i2t_query_norm=swin['i2t_extra_norm'],
            out_indices=tuple(range(len(dims))), norm_out_indices=tuple(norm_out)),
        language_model=dict(
            type='FusedRoberta', name=None, tokenizer=None, max_tokens=num_tokens, pad_to_max=True,
            fused_layers=fused_layers, image_dims=image_dims,
            config=dict(hidden_size=text['hidden_size'], num_hidden_layers=text['num_layers'],
                        num_attention_heads=text['num_heads'], intermediate_size=text['intermediate_size'],
                        vocab_size=text['vocab_size'], max_position_embeddings=text['max_position_embeddings'],
                        type_vocab_size=text['type_vocab_size'], pad_token_id=text['pad_token_id'],
                        bos_token_id=text['bos_token_id'], eos_token_id=text['eos_token_id'],
                        layer_norm_eps=text['layer_norm_eps'], hidden_dropout_prob=text['hidden_dropout_prob'],
                        attention_probs_dropout_prob=text['attention_probs_dropout_prob'], hidden_act='gelu')),
        neck=dict(
            type='FPN_DropBlock', in_channels=[swin['embed_dim']] * start_level + fpn_in[start_level:],
            out_channels=fpn['out_channels'], start_level=start_level, add_extra_convs='on_output',
            relu_before_extra_convs=True, num_outs=5,
            plugin=dict(type='SpatialDropBlock', drop_prob=0.3, block_size=3) if fpn['drop_block'] else None),
        bbox_head=dict(
            type='FIBERHead', num_classes=head['cls_logits_channels'], in_channels=fpn['out_channels'],
            feat_channels=head['channels'], lang_dim=text['hidden_size'], num_tokens=num_tokens,
            num_dyhead_blocks=head['num_convs'],
            anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=octave,
                                  scales_per_octave=1, strides=strides, center_offset=0.5),
            bbox_coder=dict(type='DeltaXYWHBBoxCoderForFIBER', target_means=[0., 0., 0., 0.],
                            target_stds=[1. / weights[0], 1. / weights[0], 1. / weights[2], 1. / weights[2]]),
            reg_decoded_bbox=True,
            loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=loss['token_gamma'], alpha=loss['token_alpha'],
                          loss_weight=loss['dot_product_token_loss_weight']),
            loss_bbox=dict(type='GIoULoss', loss_weight=loss['reg_loss_weight']),
            loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
        train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=loss['atss_topk'],
                                     iou_calculator=dict(type='BboxOverlaps2D_GLIP')),
                       allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=post['pre_nms_top_n'], score_thr=post['inference_th'],
                      nms=dict(type='nms', iou_threshold=post['nms_th'], offset=1),
                      max_per_img=post['detections_per_img'], chunked_size=-1))
