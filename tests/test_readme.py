"""The README's Python example runs, and its command summary names only flags the tools have.

The example loads the checkpoint ``make demo`` writes; here a checkpoint of the same config with
its initial (seeded random) weights stands in for it, so the test checks the API calls and the
printout, not what a trained detector finds. The README and the guides are checked for paths,
links, cited test files and dataset class names. Measured: 7 s for the file on the loaded 2-core
machine.
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import re

import numpy as np
import torch

from .conftest import ROOT

README = ROOT / 'README.md'


def _python_blocks(text: str) -> list[str]:
    return re.findall(r'^```python\n(.*?)^```', text, flags=re.M | re.S)


def _demo_module():
    spec = importlib.util.spec_from_file_location('readme_demo', ROOT / 'tools/demo.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_python_example_runs(tmp_path, monkeypatch):
    from perception.apis import inference_lidar3d, init_model

    blocks = _python_blocks(README.read_text())
    assert len(blocks) == 1, 'the README should hold exactly one python block'
    code = blocks[0]
    assert len(code.strip().splitlines()) <= 6, code

    # The checkpoint the example names is the one `make demo` writes (its default work dir and
    # full schedule), and its config and point cloud are files of the repository.
    demo = _demo_module()
    config, checkpoint, cloud = re.findall(r"'([^']+\.(?:py|pth|bin))'", code)
    iters = demo.FULL[2]
    assert checkpoint == f'work_dirs/demo_lidar3d/train/iter_{iters}.pth'
    assert ROOT / config == demo.LIDAR_CONFIG
    assert (ROOT / cloud).is_file()

    torch.manual_seed(0)
    stand_in = tmp_path / f'iter_{iters}.pth'
    torch.save({'state_dict': init_model(ROOT / config).state_dict()}, stand_in)

    monkeypatch.chdir(ROOT)  # the example's paths are relative to the repository root
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code.replace(checkpoint, str(stand_in)), 'README.md', 'exec'), {})
    lines = printed.getvalue().splitlines()

    # The same calls made here: one printed line per detection, class name, score and box.
    model = init_model(ROOT / config, stand_in)
    result = inference_lidar3d(model, ROOT / cloud)
    assert len(result['scores']) > 0 and len(lines) == len(result['scores'])
    for line, box, score, label in zip(lines, result['boxes_3d'], result['scores'],
                                       result['labels']):
        name, shown_score, *shown_box = line.split()
        assert name == model.class_names[label]
        assert float(shown_score) == round(float(score), 2)
        values = np.array(shown_box, dtype=np.float32)
        assert values.shape == (7, ), line
        np.testing.assert_allclose(values, box.round(2), atol=0.006)


def test_readme_commands_use_existing_tools_and_flags():
    text = README.read_text()
    block = re.search(r'^## Command line\n\n```bash\n(.*?)^```', text, flags=re.M | re.S)
    assert block, 'the README has no "Command line" block'
    shared = (ROOT / 'perception/engine/cli.py').read_text()  # --cfg-options, --launcher
    checked = 0
    for line in block.group(1).splitlines():
        tool = re.search(r'tools/(\S+\.(?:py|sh))', line)
        if tool is None and not line.startswith(' '):  # a continuation line is indented
            continue
        if tool is not None:
            path = ROOT / 'tools' / tool.group(1)
            assert path.is_file(), line
            source = path.read_text()
        for flag in re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', line.split('#')[0]):
            # tools/infer.py builds its image-pair flags from role names: ('left', 'right').
            assert (f"'{flag}'" in source or f"'{flag}'" in shared
                    or f"'{flag[2:]}'" in source), (flag, line)
            checked += 1
    assert checked > 30


GUIDES = ['README.md', 'docs/get_started.md', 'data/README.md', 'docs/conventions.md',
          'docs/robotics.md']


def test_guides_name_existing_files_configs_and_datasets():
    """Paths, links and dataset classes named in the README and the guides."""
    import perception.datasets  # noqa: F401  (registers the dataset classes)
    from perception.registry import DATASETS

    for guide in GUIDES:
        text = (ROOT / guide).read_text()
        base = (ROOT / guide).parent
        for link in re.findall(r'\]\(([^)#]+)\)', text):
            if '://' not in link:
                assert (base / link).exists(), (guide, link)
        # Repository paths in code spans (no placeholders, braces or globs).
        for path in re.findall(r'(?<![\w/.])((?:configs|tools|docs|tests|perception)/[\w./-]+'
                               r'\.(?:py|sh|md|png))', text):
            assert (ROOT / path).exists(), (guide, path)
    # The test files the README's table cites (`test_x` is tests/test_x.py; `test_x_*` a glob).
    cited = re.findall(r'`(test_[\w*]+)`', (ROOT / 'README.md').read_text())
    assert len(cited) > 20
    for name in cited:
        assert list((ROOT / 'tests').glob(f'{name}.py')), name
    names = set(re.findall(r'\b([A-Z][A-Za-z0-9]+Dataset)\b',
                           (ROOT / 'data/README.md').read_text()))
    assert {'SintelDataset', 'FlyingChairsDataset', 'HD1KDataset'} <= names
    for name in names:
        assert DATASETS.get(name) is not None, name
