"""Reading and writing KITTI label files: layout, size order, scores and clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from perception.datasets.kitti_format import empty_annos, read_label_file, write_label_file
from perception.engine.errors import DataError

GT_LINE = 'Car 0.00 1 2.04 334.85 178.94 624.50 372.04 1.57 1.50 3.68 -1.17 1.65 7.86 1.90'
DONTCARE_LINE = 'DontCare -1 -1 -10 800.38 163.67 825.45 184.07 -1 -1 -1 -1000 -1000 -1000 -10'


def _write(tmp_path, text: str, name: str = '000001.txt'):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_the_real_label_file_in_camera_box_order(shared_data):
    annos = read_label_file(shared_data / 'kitti_mini/training/label_2/000008.txt')
    assert len(annos['name']) == 10 and 'score' not in annos
    assert list(annos['name']).count('DontCare') == 4  # DontCare lines are kept
    # The conventions' worked example, second object: file h w l = 1.57 1.50 3.68.
    assert annos['name'][1] == 'Car'
    np.testing.assert_array_equal(annos['dimensions'][1], [3.68, 1.57, 1.50])  # (l, h, w)
    np.testing.assert_array_equal(annos['location'][1], [-1.17, 1.65, 7.86])
    np.testing.assert_array_equal(annos['bbox'][1], [334.85, 178.94, 624.50, 372.04])
    assert annos['rotation_y'][1] == 1.90 and annos['alpha'][1] == 2.04
    assert annos['occluded'].dtype == np.int64 and annos['occluded'][0] == 3
    assert annos['truncated'][0] == 0.88
    box = np.concatenate([annos['location'], annos['dimensions'], annos['rotation_y'][:, None]], 1)
    np.testing.assert_array_equal(box[1], [-1.17, 1.65, 7.86, 3.68, 1.57, 1.50, 1.90])


def test_scores_and_with_score_modes(tmp_path):
    path = _write(tmp_path, f'{GT_LINE} 0.75\n{DONTCARE_LINE} 0.1\n')
    for mode in (None, True):
        annos = read_label_file(path, with_score=mode)
        np.testing.assert_array_equal(annos['score'], [0.75, 0.1])
    with pytest.raises(DataError, match=r'000001.txt, line 1: 16 fields, expected 15'):
        read_label_file(path, with_score=False)
    gt_path = _write(tmp_path, GT_LINE + '\n', 'gt.txt')
    assert 'score' not in read_label_file(gt_path)
    with pytest.raises(DataError, match=r'gt.txt, line 1: 15 fields, expected 16 .*score'):
        read_label_file(gt_path, with_score=True)


def test_empty_and_blank_files_have_no_objects(tmp_path):
    empty = read_label_file(_write(tmp_path, ''))
    assert all(len(v) == 0 for v in empty.values()) and 'score' not in empty
    assert empty['bbox'].shape == (0, 4) and empty['dimensions'].shape == (0, 3)
    with_score = read_label_file(_write(tmp_path, '\n  \n', 'blank.txt'), with_score=True)
    assert with_score['score'].shape == (0,)
    # Blank lines between objects are skipped; line numbers in errors still count them.
    annos = read_label_file(_write(tmp_path, f'\n{GT_LINE}\n\n{GT_LINE}\n', 'gaps.txt'))
    assert len(annos['name']) == 2


@pytest.mark.parametrize('line, message', [
    (GT_LINE.rsplit(' ', 1)[0], r'line 2: 14 fields, expected 15 or 16'),
    (GT_LINE + ' 0.5 0.5', r'line 2: 17 fields, expected 15 or 16'),
    (GT_LINE.replace('334.85', 'abc'), r"line 2: field 5 \(x1\) is 'abc', expected a number"),
    (GT_LINE + ' nan', r"line 2: field 16 \(score\) is 'nan', expected a finite number"),
    (GT_LINE.replace('7.86', 'inf'), r"line 2: field 14 \(z\) is 'inf', expected a finite"),
    (GT_LINE.replace('Car 0.00 1', 'Car 0.00 0.5'), r'line 2: field 3 \(occluded\) is .0\.5.'),
])
def test_malformed_lines_name_the_file_line_and_field(tmp_path, line, message):
    path = _write(tmp_path, f'{GT_LINE}\n{line}\n' if len(line.split()) != 16
                  else f'{GT_LINE} 0.9\n{line}\n')
    with pytest.raises(DataError, match=message) as info:
        read_label_file(path)
    assert str(path) in str(info.value)


def test_mixed_field_counts_and_missing_files(tmp_path):
    with pytest.raises(DataError, match=r'line 2: 16 fields, but line 1 has 15'):
        read_label_file(_write(tmp_path, f'{GT_LINE}\n{GT_LINE} 0.3\n'))
    with pytest.raises(DataError, match='label file not found'):
        read_label_file(tmp_path / 'missing.txt')


def test_write_then_read_round_trips(tmp_path):
    annos = {
        'name': np.array(['Car', 'Pedestrian']),
        'truncated': np.array([0.0, 0.3]), 'occluded': np.array([1, 2]),
        'alpha': np.array([-1.25, 0.5]),
        'bbox': np.array([[10.0, 20.0, 110.5, 80.25], [300.0, 100.0, 340.0, 190.0]]),
        'dimensions': np.array([[3.9, 1.5, 1.6], [0.8, 1.75, 0.6]]),  # (l, h, w)
        'location': np.array([[1.0, 1.6, 20.0], [-2.0, 1.7, 12.5]]),
        'rotation_y': np.array([0.1, -3.0]), 'score': np.array([0.912345, 0.25]),
    }
    path = tmp_path / 'out' / '000003.txt'
    write_label_file(path, annos, decimals=4)
    first = path.read_text().splitlines()[0].split()
    assert first[8:11] == ['1.5000', '1.6000', '3.9000']  # file order h w l
    back = read_label_file(path, with_score=True)
    np.testing.assert_array_equal(back['name'], annos['name'])
    for key, value in annos.items():
        if key != 'name':
            np.testing.assert_allclose(back[key], value, atol=1e-4)
    # Detections without truncation / occlusion / alpha get KITTI's "not given" values.
    partial = {k: annos[k] for k in ('name', 'bbox', 'dimensions', 'location', 'rotation_y')}
    write_label_file(tmp_path / 'partial.txt', partial)
    back = read_label_file(tmp_path / 'partial.txt', with_score=False)
    np.testing.assert_array_equal(back['truncated'], [-1, -1])
    np.testing.assert_array_equal(back['occluded'], [-1, -1])
    np.testing.assert_array_equal(back['alpha'], [-10, -10])
    write_label_file(tmp_path / 'empty.txt', empty_annos())
    assert (tmp_path / 'empty.txt').read_text() == ''


def test_write_reproduces_a_kitti_file_byte_for_byte(shared_data, tmp_path):
    source = shared_data / 'kitti_mini/training/label_2/000000.txt'
    write_label_file(tmp_path / 'copy.txt', read_label_file(source), decimals=2)
    assert (tmp_path / 'copy.txt').read_text() == source.read_text()


def test_write_rejects_bad_annos(tmp_path):
    annos = {'name': np.array(['Car']), 'bbox': np.zeros((2, 4)), 'dimensions': np.ones((1, 3)),
             'location': np.zeros((1, 3)), 'rotation_y': np.zeros(1)}
    with pytest.raises(ValueError, match=r"'bbox' has shape \(2, 4\), expected \(1, 4\)"):
        write_label_file(tmp_path / 'x.txt', annos)
    bad = {'name': np.array(['Big Car']), 'bbox': np.zeros((1, 4)), 'dimensions': np.ones((1, 3)),
           'location': np.zeros((1, 3)), 'rotation_y': np.zeros(1)}
    with pytest.raises(ValueError, match='whitespace'):
        write_label_file(tmp_path / 'x.txt', bad)
    bad['name'] = np.array(['Car'])
    bad['score'] = np.array([np.nan])
    with pytest.raises(ValueError, match="'score' holds NaN"):
        write_label_file(tmp_path / 'x.txt', bad)
