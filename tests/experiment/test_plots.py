import math

import pytest
from PIL import Image

from mllmrec_pyg.experiment.plots import plot_epoch_curve, plot_metric_bars


def _png(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.format, image.size


def test_epoch_curve_is_a_png(tmp_path):
    path = tmp_path / 'sub' / 'loss.png'
    plot_epoch_curve([1, 2, 3], [0.7, 0.6, math.nan], str(path), best_epoch=2,
                     ylabel='training loss', title='Training loss')
    assert _png(path) == ('PNG', (600, 360))
    assert not (tmp_path / 'sub' / 'loss.png.tmp').exists()


def test_the_same_numbers_give_the_same_bytes(tmp_path):
    for name in ('a.png', 'b.png'):
        plot_epoch_curve([1, 2], [0.5, 0.25], str(tmp_path / name), best_epoch=1)
    assert (tmp_path / 'a.png').read_bytes() == (tmp_path / 'b.png').read_bytes()


def test_best_epoch_outside_the_log_is_not_marked(tmp_path):
    plot_epoch_curve([1, 2], [0.5, 0.25], str(tmp_path / 'a.png'), best_epoch=5)
    assert _png(tmp_path / 'a.png')[0] == 'PNG'


def test_epoch_curve_needs_one_value_per_epoch(tmp_path):
    with pytest.raises(ValueError, match=r'a\.png: 2 epochs but 1 values to plot'):
        plot_epoch_curve([1, 2], [0.5], str(tmp_path / 'a.png'))


def test_metric_bars(tmp_path):
    path = tmp_path / 'bars.png'
    plot_metric_bars(['bpr', 'mllmrec'], [0.2, 0.3], str(path), ylabel='test recall@20',
                     labels=['0.2000', '0.3000\np=0.01'])
    assert _png(path) == ('PNG', (440, 380))  # 1.2 in per bar + 2 in
    plot_metric_bars(['a', 'b', 'c', 'd'], [0.0, 0.0, 0.0, 0.0], str(path), highlight=None)
    assert _png(path) == ('PNG', (680, 380))
    with pytest.raises(ValueError, match='one name, value and label per bar'):
        plot_metric_bars(['a'], [0.1, 0.2], str(path))
