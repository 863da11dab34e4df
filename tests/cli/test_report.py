import json

from PIL import Image

from mllmrec_pyg.cli import main

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'


def test_report_regenerates_the_report_and_its_plots(tmp_path, capsys):
    out = tmp_path / 'run'
    assert main(['train', SYNTHETIC, '--model', 'bpr', '--epochs', '2', '--out', str(out),
                 '--no-progress']) == 0
    first = (out / 'report.md').read_text()
    (out / 'report.md').unlink()
    (out / 'plots' / 'val_recall_at_20.png').unlink()
    capsys.readouterr()
    assert main(['report', str(out)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        str(out / 'report.md'), str(out / 'plots' / 'training_loss.png'),
        str(out / 'plots' / 'val_recall_at_20.png')]
    assert (out / 'report.md').read_text().split('## Settings')[0] == \
        first.split('## Settings')[0]
    with Image.open(out / 'plots' / 'val_recall_at_20.png') as image:
        image.verify()
    # The run's own record of the stage still holds: nothing reruns.
    assert json.loads((out / 'stages.json').read_text())['report']['files'][0] == 'report.md'


def test_report_of_a_folder_that_is_no_run(tmp_path, capsys):
    assert main(['report', str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f'mllmrec report: error: {tmp_path / "metrics.json"}: not found; RUN_DIR must be '
        'the --out folder of `mllmrec train` or `mllmrec run`')
