"""Write the built-in toy dataset (coloured shapes with attribute captions) used by the quickstart and the tests.

Example::

    python tools/misc/make_toy_dataset.py data/toy_shapes --seed 0

The same seed always gives byte-identical files. See ``fiber_mmdet/datasets/synthetic_shapes.py`` for the layout.
"""
import argparse
import inspect
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a source checkout

from fiber_mmdet.datasets.synthetic_shapes import generate_toy_dataset  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    # the defaults are the generator's own, so the two cannot drift apart
    default = {k: p.default for k, p in inspect.signature(generate_toy_dataset).parameters.items()}
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir', help='output directory')
    parser.add_argument('--seed', type=int, default=default['seed'], help='random seed (default: %(default)s)')
    parser.add_argument('--num-train-od', type=int, default=default['num_train_od'],
                        help='ODVG detection training images (default: %(default)s)')
    parser.add_argument('--num-train-od-attr', type=int, default=default['num_train_od_attr'],
                        help='ODVG detection training images labelled by colour and shape (default: %(default)s)')
    parser.add_argument('--num-train-vg', type=int, default=default['num_train_vg'],
                        help='ODVG grounding training images (default: %(default)s)')
    parser.add_argument('--num-val', type=int, default=default['num_val'],
                        help='COCO detection validation images (default: %(default)s)')
    parser.add_argument('--num-grounding', type=int, default=default['num_grounding'],
                        help='Flickr-style grounding images (default: %(default)s)')
    parser.add_argument('--vocab-size', type=int, default=default['tokenizer_vocab_size'],
                        help='vocabulary size of the trained tokenizer (default: %(default)s)')
    parser.add_argument('--no-tokenizer', action='store_true', help='do not train the tokenizer')
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    meta = generate_toy_dataset(
        args.out_dir, seed=args.seed, num_train_od=args.num_train_od, num_train_od_attr=args.num_train_od_attr,
        num_train_vg=args.num_train_vg,
        num_val=args.num_val, num_grounding=args.num_grounding, tokenizer_vocab_size=args.vocab_size,
        with_tokenizer=not args.no_tokenizer)
    size = sum(osp.getsize(osp.join(root, name)) for root, _, names in os.walk(args.out_dir) for name in names)
    counts = meta['counts']
    print(f'toy dataset written to {args.out_dir} in {meta["seconds"]:.1f} s ({size / 2**20:.1f} MiB): '
          f'{counts["train_od"]} OD train images ({counts["train_od_boxes"]} boxes, {counts["train_od_empty"]} '
          f'empty), {counts["train_od_attr"]} OD train images by colour and shape, {counts["train_vg"]} VG train '
          f'images, {counts["val"]} val images ({counts["val_boxes"]} boxes), {counts["grounding_records"]} '
          f'grounding captions on {counts["grounding_images"]} images; '
          f'held-out combinations: {", ".join(" ".join(c[::-1]) for c in meta["held_out"])}')


if __name__ == '__main__':
    main()
