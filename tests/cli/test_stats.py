import json
import subprocess
import sys

import pytest

from mllmrec_pyg.cli import main
from tests.conftest import shared_dataset


def write_tiny(root):
    root.mkdir()
    (root / 'tiny.inter').write_text('userID\titemID\tx_label\n0\t0\t0\n0\t1\t1\n'
                                     '0\t2\t2\n1\t1\t0\n1\t2\t1\n1\t0\t2\n')
    return root


def test_stats_json(tmp_path, capsys):
    root = write_tiny(tmp_path / 'tiny')
    assert main(['stats', str(root), '--format', 'json']) == 0
    assert json.loads(capsys.readouterr().out) == {
        'users': 2, 'items': 3, 'interactions': 6, 'train': 2, 'val': 2, 'test': 2}


def test_stats_table_and_details(tmp_path, capsys):
    root = write_tiny(tmp_path / 'tiny')
    assert main(['stats', str(root)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ['users', '2']
    assert out[-1].split() == ['test', '2']
    assert main(['stats', str(root), '--format', 'json', '--details']) == 0
    details = json.loads(capsys.readouterr().out)
    assert details['report']['split'] == 'given'
    assert details['domain'] == 'tiny'


def test_stats_user_error(tmp_path, capsys):
    assert main(['stats', str(tmp_path / 'missing')]) == 2
    assert 'no such dataset folder' in capsys.readouterr().err
    bad = tmp_path / 'bad'
    bad.mkdir()
    (bad / 'bad.inter').write_text('userID\titemID\n0\tx\n')
    assert main(['stats', str(bad)]) == 2
    assert "bad.inter, line 2: column 'itemID' holds 'x'" in capsys.readouterr().err


def test_console_entry_point_module(tmp_path):
    root = write_tiny(tmp_path / 'tiny')
    out = subprocess.run([sys.executable, '-m', 'mllmrec_pyg', 'stats', str(root),
                          '--format', 'json'], capture_output=True, text=True, check=True,
                         env={'MLLMREC_HOME': str(tmp_path / 'home'),
                              'PATH': '/usr/bin:/bin'})
    assert json.loads(out.stdout)['interactions'] == 6


@pytest.mark.dataset
def test_stats_sports(capsys):
    assert main(['stats', str(shared_dataset('amazon-sports')), '--format', 'json']) == 0
    assert json.loads(capsys.readouterr().out) == {
        'users': 35598, 'items': 18357, 'interactions': 296337,
        'train': 218409, 'val': 37899, 'test': 40029}
