# A small FIBER with the same structure as FIBER-B (fusion in the last blocks of stage 2 and in stage 3),
# trainable from scratch on a CPU. The tokenizer is a local RoBERTa-style directory, which the toy dataset
# writes (docs/datasets.md, section "The toy dataset").
_base_ = './fiber_b.py'

tokenizer_dir = 'data/toy/tokenizer'
fusion_blocks = [(2, 2), (2, 3), (3, 0), (3, 1)]
fused_text_layers = [2, 3, 4, 5]
fused_image_dims = [128, 128, 256, 256]

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, depths=[2, 2, 4, 2], num_heads=[1, 2, 4, 8]),
        window_size=7,
        text_dims=64,
        fusion_blocks=fusion_blocks,
        drop_path_rate=0.1),
    language_model=dict(
        name=None,
        tokenizer=tokenizer_dir,
        config=dict(vocab_size=1000, hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
                    intermediate_size=128, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
                    bos_token_id=0, eos_token_id=2, hidden_act='gelu', layer_norm_eps=1e-5,
                    hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1, initializer_range=0.02),
        fused_layers=fused_text_layers,
        image_dims=fused_image_dims),
    neck=dict(in_channels=[64, 128, 256], out_channels=64),
    bbox_head=dict(in_channels=64, feat_channels=64, lang_dim=64, num_dyhead_blocks=2))
