"""The prompt options of FIBER's command-line tools (``--texts``, ``-c``, ``--phrases``, ``--tokens-positive``),
parsed one way for the PyTorch demo, the ONNX demo and the export; no torch needed."""
import argparse
import ast
from typing import Any, Tuple


def add_prompt_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add the prompt options to ``parser``."""
    parser.add_argument('--texts', required=required,
                        help="class names 'a . b' (with -c), '$: coco', a caption (with --phrases or "
                        '--tokens-positive) or a referring expression (with --tokens-positive -1)')
    parser.add_argument('-c', '--custom-entities', action='store_true',
                        help="--texts is a list of class names separated by '.'")
    parser.add_argument('--phrases', nargs='+', help='the phrases of --texts to ground (found in the caption)')
    parser.add_argument('--tokens-positive', type=str,
                        help="character spans per phrase, e.g. '[[[0, 5]], [[14, 21]]]', or -1 for a referring "
                        'expression')


def prompt_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Tuple[Any, Any, bool]:
    """``(texts, tokens_positive, custom_entities)`` from parsed options; bad combinations exit through
    ``parser.error``. ``args.tokens_positive`` is replaced by the parsed value."""
    if args.phrases and args.tokens_positive is not None:
        parser.error('give --phrases or --tokens-positive, not both')
    if args.tokens_positive is not None:
        try:
            args.tokens_positive = ast.literal_eval(args.tokens_positive)
        except (ValueError, SyntaxError):
            parser.error(f'--tokens-positive {args.tokens_positive!r} is not a Python literal such as '
                         "'[[[0, 5]], [[14, 21]]]' or -1")
    elif args.phrases:
        args.tokens_positive = list(args.phrases)
    return args.texts, args.tokens_positive, args.custom_entities
