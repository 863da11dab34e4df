import importlib.util
import pathlib

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / 'benchmarks' / 'gpu_check.py'


def _module():
    spec = importlib.util.spec_from_file_location('gpu_check', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_runs_its_comparisons_on_cpu(capsys):
    # CPU against CPU: every comparison must pass exactly; the script's
    # code paths (data, layer, graph, two models, evaluation, ivf) all run.
    assert _module().main(['--quick', '--device', 'cpu', '--skip-tests',
                           '--items', '2000']) == 0
    out = capsys.readouterr().out
    for name in ('LightGCN layer', 'refined item graph', 'mllmrec training epoch',
                 'lightgcn full evaluation', 'k-NN ivf at 2,000 x 384'):
        assert f'ok   {name}' in out
    assert 'FAIL' not in out


def test_gpu_check_without_cuda_says_so(capsys, monkeypatch):
    module = _module()
    monkeypatch.setattr(module.torch.cuda, 'is_available', lambda: False)
    assert module.main(['--device', 'cuda:0']) == 2
    assert 'no CUDA device here' in capsys.readouterr().err


def test_gpu_check_fails_on_a_mismatch(capsys, monkeypatch):
    module = _module()
    monkeypatch.setitem(module.TOL, 'loss', -1.0)  # nothing can pass
    assert module.main(['--quick', '--device', 'cpu', '--skip-tests', '--items', '500']) == 1
    assert 'check(s) failed: mllmrec training epoch, lightgcn training epoch' in \
        capsys.readouterr().err
