# FIBER-B (fine-grained stage): Swin-B/12 + roberta-base fused in the last 4 blocks of stage 2 and both blocks
# of stage 3, FPN P3-P7, language-aware DyHead (6 blocks): 252,034,744 parameters, part by part equal to the
# original's (docs/parity.md, section "FIBER-B at full size").
lang_model_name = 'roberta-base'  # a transformers hub name or a local directory (config, tokenizer, weights)

# Pairing of fused image blocks (stage, block) with text layers, in execution order: the k-th fused block and
# the k-th fused text layer update in parallel from the same pre-step states.
fusion_blocks = [(2, 14), (2, 15), (2, 16), (2, 17), (3, 0), (3, 1)]
fused_text_layers = [6, 7, 8, 9, 10, 11]
fused_image_dims = [512, 512, 512, 512, 1024, 1024]  # Swin-B width of each fused block's stage

model = dict(
    type='FIBER',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # BGR 0-255, as the original (images are decoded as BGR)
        mean=[103.53, 116.28, 123.675],
        std=[57.375, 57.12, 58.395],
        bgr_to_rgb=False,
        pad_size_divisor=32),
    backbone=dict(
        type='FusionSwinTransformer',
        arch='base',
        window_size=12,
        text_dims=768,
        fusion_blocks=fusion_blocks,
        i2t_query_norm=False,  # True for FIBER v3 (RefCOCO models)
        drop_path_rate=0.4,
        out_indices=(1, 2, 3),
        frozen_stages=-1,
        with_cp=False),
    language_model=dict(
        type='FusedRoberta',
        name=lang_model_name,
        max_tokens=256,
        pad_to_max=True,
        fused_layers=fused_text_layers,
        image_dims=fused_image_dims),
    neck=dict(
        type='FPN_DropBlock',
        in_channels=[256, 512, 1024],
        out_channels=256,
        start_level=0,
        add_extra_convs='on_output',
        relu_before_extra_convs=True,
        num_outs=5,
        plugin=dict(type='SpatialDropBlock', drop_prob=0.3, block_size=3)),
    bbox_head=dict(
        type='FIBERHead',
        num_classes=80,  # unused: classes are caption tokens
        in_channels=256,
        feat_channels=256,
        lang_dim=768,
        num_tokens=256,
        num_dyhead_blocks=6,
        anchor_generator=dict(
            type='AnchorGenerator',
            ratios=[1.0],
            octave_base_scale=8,
            scales_per_octave=1,
            strides=[8, 16, 32, 64, 128],
            center_offset=0.5),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoderForFIBER',
            target_means=[0., 0., 0., 0.],
            target_stds=[0.1, 0.1, 0.2, 0.2]),
        reg_decoded_bbox=True,
        loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
        loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(
        assigner=dict(type='ATSSAssigner', topk=9, iou_calculator=dict(type='BboxOverlaps2D_GLIP')),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
        # True: a batch's captions run on the longest of them and one padding column instead of 256; padding is
        # masked everywhere and the spare column keeps the background anchors' target, so the losses and
        # gradients are the padded batch's (tested). False: always 256, as the original
        trim_text_padding=True),
    test_cfg=dict(
        nms_pre=1000,
        score_thr=0.05,
        nms=dict(type='nms', iou_threshold=0.6, offset=1),  # the original's NMS IoU uses +1 widths
        max_per_img=100,
        chunked_size=-1,  # > 0: that many class names per prompt (LVIS: 40); -1: as many as fit in 256 tokens
        # compute the text-free image part once per image and the text-free text part once per prompt (kept for
        # text_cache_size prompts); False: every prompt of every image runs the whole model, as the original
        reuse_text_free_features=True,
        text_cache_size=64,
        # with reuse_text_free_features: the (image, prompt) pairs run through the fused blocks, neck and head
        # this many per forward; memory grows linearly with it, 1 = one pair at a time. None: 8 on CUDA (LVIS'
        # 31 prompts: 4 forwards), 1 on the CPU, where 8 per forward was 1.15x slower (FIBER-B, 512², 31 prompts)
        prompt_batch_size=None,
        # True: each prompt runs on its own tokens instead of 256 (padding is masked everywhere: the same
        # detections, tested on the reference fixtures; FIBER-B, 512², CPU: 0.92-0.97x the time of one prompt).
        # False: always 256, as the original
        trim_text_padding=True))
