import json

import matplotlib.image

from mllmrec_pyg.cli import main
from mllmrec_pyg.experiment.embeddings import PANEL_SIZE, embedding_table
from mllmrec_pyg.experiment.plots import DPI

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'


def _train(tmp_path, name, model='bpr'):
    out = tmp_path / name
    assert main(['train', SYNTHETIC, '--model', model, '--epochs', '2', '--out', str(out),
                 '--no-progress']) == 0
    return out


def _error(capsys):
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_embed_plot_writes_the_png_and_the_table(tmp_path, capsys):
    bpr = _train(tmp_path, 'bpr')
    lightgcn = _train(tmp_path, 'lightgcn', 'lightgcn')
    capsys.readouterr()
    prefix = tmp_path / 'out' / 'emb'
    assert main(['embed-plot', str(bpr), str(lightgcn), '--out', str(prefix),
                 '--perplexity', '5', '--max-users', '30', '--split', 'val']) == 0
    captured = capsys.readouterr()
    assert captured.out == embedding_table([str(bpr), str(lightgcn)], split='val')
    assert captured.err == f'wrote {prefix}.md, {prefix}.png\n'
    lines = captured.out.splitlines()
    assert lines[0].startswith('| run | model | val R@20 | alignment |')
    block = json.loads((lightgcn / 'metrics.json').read_text())['representation']['val']
    assert lines[3].startswith("| lightgcn | lightgcn | ") and \
        f"| {block['alignment']:.4f} | {block['uniformity_user']:.4f} |" in lines[3]
    assert (tmp_path / 'out' / 'emb.md').read_text().startswith(captured.out)
    image = matplotlib.image.imread(f'{prefix}.png')
    assert image.shape[:2] == (int(PANEL_SIZE[1] * DPI), 2 * int(PANEL_SIZE[0] * DPI))


def test_embed_plot_errors_are_one_line(tmp_path, capsys):
    bpr = _train(tmp_path, 'bpr')
    capsys.readouterr()
    out = str(tmp_path / 'emb')
    assert main(['embed-plot', str(tmp_path / 'nothing'), '--out', out]) == 2
    assert _error(capsys) == (f'mllmrec embed-plot: error: {tmp_path / "nothing"}: not a '
                              'folder; RUN_DIR must be the --out folder of `mllmrec train` '
                              'or `mllmrec run`')
    (tmp_path / 'empty').mkdir()
    assert main(['embed-plot', str(tmp_path / 'empty'), '--out', out]) == 2
    assert _error(capsys) == (f'mllmrec embed-plot: error: {tmp_path / "empty"}/metrics.json: '
                              'not found; RUN_DIR must be the --out folder of `mllmrec train` '
                              'or `mllmrec run`')
    assert main(['embed-plot', str(bpr), '--out', out, '--perplexity', '40']) == 2
    assert _error(capsys) == ('mllmrec embed-plot: error: --perplexity 40: must lie in '
                              '(0, 40), below the 40 users plotted; lower it')
    assert main(['embed-plot', str(bpr), '--out', out, '--max-users', '0']) == 2
    assert _error(capsys) == 'mllmrec embed-plot: error: --max-users 0: must be positive'
    assert main(['embed-plot', str(bpr), '--out', str(tmp_path)]) == 2
    assert _error(capsys) == (f'mllmrec embed-plot: error: --out {tmp_path}: is a folder; '
                              f'give a file prefix, e.g. {tmp_path / "embed_plot"}')
    (bpr / 'representations.pt').unlink()
    assert main(['embed-plot', str(bpr), '--out', out]) == 2
    assert _error(capsys) == (f'mllmrec embed-plot: error: {bpr}/representations.pt: not '
                              'found (the run predates it); rerun the run with --force '
                              'evaluate to write it')
    assert not (tmp_path / 'emb.png').exists() and not (tmp_path / 'emb.md').exists()
