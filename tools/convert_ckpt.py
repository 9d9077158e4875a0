"""Convert a checkpoint published by a model's authors into this project's layout.

    python tools/convert_ckpt.py KIND OFFICIAL.pth OUT.pth [--config CONFIG] [--force]

KIND names the source (``python tools/convert_ckpt.py --help`` lists them). The file is read with
``weights_only=True``, its keys are mapped, and the result is checked key by key and shape by shape
against the model of CONFIG (each kind has a default where the variant is unambiguous). OUT holds
``{'state_dict', 'meta'}`` and loads with ``tools/test.py CONFIG OUT`` or ``init_model``.
"""
from __future__ import annotations

import argparse

import perception.models  # noqa: F401  (registers the models and their official formats)
from perception.engine.cli import exits_cleanly_on_user_error
from perception.engine.official_checkpoints import OFFICIAL_FORMATS, convert_official_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    kinds = '\n'.join(f'  {k}: {f.description}' for k, f in sorted(OFFICIAL_FORMATS.items()))
    parser = argparse.ArgumentParser(
        description='Convert an official checkpoint.', epilog=f'kinds:\n{kinds}',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('kind', choices=sorted(OFFICIAL_FORMATS), metavar='KIND')
    parser.add_argument('src', help='the official checkpoint file')
    parser.add_argument('dst', help='where to write the converted checkpoint')
    parser.add_argument('--config', help='config of the model the weights are for '
                        "(default: the kind's published configuration)")
    parser.add_argument('--force', action='store_true', help='overwrite DST if it exists')
    return parser.parse_args(argv)


@exits_cleanly_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = convert_official_checkpoint(args.kind, args.src, args.dst, args.config, args.force)
    print(f'{args.dst}: {report.loaded} tensors, every key and shape matches the model')


if __name__ == '__main__':
    main()
