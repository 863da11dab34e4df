r"""Faults a user can cause, through ``mllmrec``: each is one line naming the
file or option and the fix, with the exit status of its kind; nothing
finished is lost and nothing starts (no LLM call, no training epoch)."""
import json
import os
import shutil

import pytest
import torch

import mllmrec_pyg.llm.cache as cache_module
from mllmrec_pyg.cli import main
from mllmrec_pyg.experiment.pipeline import BackendSpec
from mllmrec_pyg.llm.backends.base import BackendError, Generation
from tests.llm.fake_backend import FakeBackend

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'
BPR = ['--model', 'bpr', '--epochs', '1', '--no-progress']
#: ``mllmrec run`` with an LLM for the first 4 users (the backend is
#: replaced by a scripted one in each test) and no image descriptions.
LLM = ['--describe-backend', 'none', '--prefer-backend', 'openai', '--prefer-model',
       'fake-1', '--base-url', 'http://127.0.0.1:9/v1', '--llm-users', '4',
       '--epochs', '1', '--no-progress']



@pytest.fixture
def no_backend(monkeypatch):
    r"""Fails the test if any generation backend is built."""
    def build(self):
        raise AssertionError('a backend was built')

    monkeypatch.setattr(BackendSpec, 'build', build)


@pytest.fixture
def read_only(monkeypatch):
    r"""Makes a folder read-only; as root, who writes anywhere, ``os.access``
    answers for it as it does for any other user."""
    made = []
    original = os.access

    def access(path, mode, *args, **kwargs):
        path = os.path.abspath(os.fspath(path))
        if mode & os.W_OK and any(path == str(m) for m in made):
            return False
        return original(path, mode, *args, **kwargs)

    def make(path):
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(0o555)
        made.append(path)
        return path

    if os.geteuid() == 0:
        monkeypatch.setattr(os, 'access', access)
    yield make
    for path in made:
        path.chmod(0o755)


def snapshot(folder):
    r"""Every file of :obj:`folder` with its bytes."""
    files = {}
    for root, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(root, name), 'rb') as f:
                files[os.path.relpath(os.path.join(root, name), folder)] = f.read()
    return files


def error_line(capsys):
    r"""The last line of stderr, after checking that no traceback was shown."""
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    return err.strip().splitlines()[-1]


@pytest.fixture
def finished(tmp_path, epochs, capsys):
    r"""A finished ``mllmrec train`` run folder (BPR, one epoch)."""
    out = tmp_path / 'run'
    assert main(['train', SYNTHETIC, *BPR, '--out', str(out)]) == 0
    assert epochs['n'] == 1
    capsys.readouterr()
    return out


# --------------------------------------------------------------------------
# 1. Every error a user can cause is one line (exit 2); a bug is one line
#    too (exit 1); --debug shows the traceback; Ctrl-C exits 130.
# --------------------------------------------------------------------------

def _raise(exc):
    def run(args):
        raise exc
    return run


@pytest.mark.parametrize('exc, message, code', [
    (PermissionError(13, 'Permission denied', '/data/x.inter'),
     '/data/x.inter: Permission denied', 2),
    (IsADirectoryError(21, 'Is a directory', '/data/prefs'), '/data/prefs: Is a directory', 2),
    (FileNotFoundError('/data/x: no such dataset folder'), '/data/x: no such dataset folder',
     2),
    (ValueError('two\nlines'), 'two lines', 2),
    (UnicodeDecodeError('utf-8', b'\xff', 0, 1, 'invalid start byte'),
     "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte", 2),
    (__import__('sqlite3').DatabaseError('file is not a database'),
     'file is not a database', 2),
    (__import__('yaml').YAMLError('bad\n  yaml'), 'bad yaml', 2),
    (ZeroDivisionError('division by zero'), 'unexpected ZeroDivisionError: division by zero '
     '(run with --debug for the traceback)', 1),
])
def test_errors_are_one_line(exc, message, code, monkeypatch, capsys):
    import mllmrec_pyg.cli.stats as stats
    monkeypatch.setattr(stats, 'run', _raise(exc))
    assert main(['stats', SYNTHETIC]) == code
    assert error_line(capsys) == f'mllmrec stats: error: {message}'


def test_a_corrupt_torch_file_is_a_user_error(tmp_path, monkeypatch, capsys):
    import mllmrec_pyg.cli.stats as stats
    path = tmp_path / 'data.pt'
    torch.save({'x': torch.zeros(100)}, path)
    path.write_bytes(path.read_bytes()[:200])

    def run(args):
        torch.load(str(path), weights_only=True)

    monkeypatch.setattr(stats, 'run', run)
    assert main(['stats', SYNTHETIC]) == 2
    assert error_line(capsys) == (f'mllmrec stats: error: {path}: not a readable file '
                                  '(corrupt or truncated: RuntimeError); delete it and rerun')


@pytest.mark.parametrize('argv', [['--debug', 'stats', SYNTHETIC],
                                  ['stats', SYNTHETIC, '--debug']])
def test_debug_shows_the_traceback(argv, monkeypatch, capsys):
    import mllmrec_pyg.cli.stats as stats
    monkeypatch.setattr(stats, 'run', _raise(ZeroDivisionError('division by zero')))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert 'Traceback (most recent call last)' in err
    assert err.strip().splitlines()[-1] == (
        'mllmrec stats: error: unexpected ZeroDivisionError: division by zero '
        '(run with --debug for the traceback)')
    monkeypatch.setattr(stats, 'run', _raise(ValueError('bad input')))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert 'Traceback' in err and err.strip().splitlines()[-1] == (
        'mllmrec stats: error: bad input')


def test_interrupt_says_what_was_saved(monkeypatch, capsys):
    import mllmrec_pyg.cli.stats as stats
    monkeypatch.setattr(stats, 'run', _raise(KeyboardInterrupt()))
    monkeypatch.setattr(cache_module, 'generations_saved', lambda: 3)
    assert main(['stats', SYNTHETIC]) == 130
    assert error_line(capsys) == ('mllmrec stats: interrupted, 3 generations saved, '
                                  'rerun to resume')
    monkeypatch.delattr(cache_module, 'generations_saved')
    assert main(['stats', SYNTHETIC]) == 130
    assert error_line(capsys) == ('mllmrec stats: interrupted, 0 generations saved, '
                                  'rerun to resume')


def test_interrupted_run_resumes(tmp_path, epochs, monkeypatch, capsys):
    out = tmp_path / 'run'
    backend = FakeBackend(interrupt_after=2)
    monkeypatch.setattr(BackendSpec, 'build', lambda self: backend)
    before = cache_module.generations_saved()
    argv = ['encode', SYNTHETIC, '--out', str(out), *LLM]
    assert main(argv) == 130
    assert error_line(capsys) == (f'mllmrec encode: interrupted, {before + 2} generations '
                                  'saved, rerun to resume')
    assert not (out / 'encode').exists() and epochs['n'] == 0
    # The rerun asks only for the two users not answered yet.
    again = FakeBackend()
    monkeypatch.setattr(BackendSpec, 'build', lambda self: again)
    assert main(argv) == 0
    assert again.calls == 2 and (out / 'encode' / 'features.pt').exists()


# --------------------------------------------------------------------------
# 2. A bad --out or a read-only MLLMREC_HOME: one line before anything runs.
# --------------------------------------------------------------------------

@pytest.mark.parametrize('command', ['train', 'run', 'encode'])
def test_out_is_an_existing_file(command, tmp_path, epochs, no_backend, capsys):
    out = tmp_path / 'out.txt'
    out.write_text('keep me')
    extra = BPR if command == 'train' else LLM
    assert main([command, SYNTHETIC, *extra, '--out', str(out)]) == 2
    assert error_line(capsys) == (f'mllmrec {command}: error: --out {out}: is an existing '
                                  'file, not a folder; name a folder (a new one or a run '
                                  'folder)')
    assert out.read_text() == 'keep me' and epochs['n'] == 0


def test_out_is_read_only(tmp_path, epochs, no_backend, read_only, capsys):
    folder = read_only(tmp_path / 'ro')
    assert main(['train', SYNTHETIC, *BPR, '--out', str(folder)]) == 2
    assert error_line(capsys) == (f'mllmrec train: error: --out {folder}: the folder is not '
                                  'writable; name a writable folder or fix its permissions')
    assert main(['run', SYNTHETIC, *LLM, '--out', str(folder / 'new')]) == 2
    assert error_line(capsys) == (f'mllmrec run: error: --out {folder / "new"}: cannot '
                                  f'create the folder, {folder} is not writable; name a '
                                  'folder in a writable place')
    assert os.listdir(folder) == [] and epochs['n'] == 0


def test_out_parent_cannot_be_created(tmp_path, epochs, capsys):
    parent = tmp_path / 'a-file'
    parent.write_text('keep me')
    out = parent / 'sub' / 'run'
    assert main(['train', SYNTHETIC, *BPR, '--out', str(out)]) == 2
    assert error_line(capsys) == (f'mllmrec train: error: --out {out}: cannot create the '
                                  f'folder, {parent} is a file; name a folder whose parents '
                                  'are folders')
    assert parent.read_text() == 'keep me' and epochs['n'] == 0


def test_cache_is_a_folder(tmp_path, epochs, no_backend, capsys):
    folder = tmp_path / 'cache'
    folder.mkdir()
    assert main(['run', SYNTHETIC, *LLM, '--out', str(tmp_path / 'run'),
                 '--cache', str(folder)]) == 2
    assert error_line(capsys) == (f'mllmrec run: error: --cache {folder}: is a folder, not a '
                                  'cache file; name a file, e.g. generations.sqlite')
    assert not (tmp_path / 'run').exists() and epochs['n'] == 0


def test_library_checks_out_before_loading_anything(tmp_path, monkeypatch):
    import mllmrec_pyg.experiment.runner as runner
    from mllmrec_pyg.experiment import build_config, run_experiment, run_pipeline

    config = build_config(SYNTHETIC, model='bpr')
    monkeypatch.setattr(runner, 'load_experiment_data', _raise(AssertionError('loaded')))
    out = tmp_path / 'out.txt'
    out.write_text('keep me')
    message = f'--out {out}: is an existing file'
    with pytest.raises(ValueError, match=message):
        run_experiment(SYNTHETIC, config, str(out))
    with pytest.raises(ValueError, match=message):
        run_pipeline(SYNTHETIC, config, str(out))


def test_read_only_home(tmp_path, epochs, no_backend, read_only, monkeypatch, capsys):
    home = read_only(tmp_path / 'home')
    monkeypatch.setenv('MLLMREC_HOME', str(home))
    assert main(['train', SYNTHETIC, *BPR, '--out', str(tmp_path / 'a')]) == 2
    assert error_line(capsys) == (f'mllmrec train: error: {home}: not writable (processed '
                                  'datasets go to MLLMREC_HOME); set MLLMREC_HOME to a '
                                  'writable folder')
    assert main(['run', SYNTHETIC, *LLM, '--out', str(tmp_path / 'b')]) == 2
    assert error_line(capsys).endswith('set MLLMREC_HOME to a writable folder')
    assert os.listdir(home) == [] and epochs['n'] == 0


# --------------------------------------------------------------------------
# 3. A corrupt checkpoint is one line naming it and the fix; a corrupt
#    stage output is a stale stage, rerun with a one-line warning.
# --------------------------------------------------------------------------

def _truncate(path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def test_corrupt_checkpoint_of_an_up_to_date_train_stage(finished, epochs, capsys):
    checkpoint = finished / 'checkpoint.pt'
    _truncate(checkpoint)
    before = snapshot(finished)
    argv = ['train', SYNTHETIC, *BPR, '--out', str(finished)]
    assert main(argv + ['--force', 'evaluate']) == 2
    assert error_line(capsys) == (f'mllmrec train: error: {checkpoint}: not a readable '
                                  'checkpoint (corrupt or truncated); delete it or rerun '
                                  'with --force train')
    assert snapshot(finished) == before and epochs['n'] == 1
    # A foreign file is refused the same way.
    torch.save({'weights': torch.zeros(2)}, checkpoint)
    assert main(argv + ['--force', 'evaluate']) == 2
    assert error_line(capsys) == (f'mllmrec train: error: {checkpoint}: not a checkpoint of '
                                  'this trainer; delete it or rerun with --force train')
    # The fixes work: --force train retrains, a deleted checkpoint too.
    assert main(argv + ['--force', 'train']) == 0 and epochs['n'] == 2
    checkpoint.unlink()
    assert main(argv + ['--force', 'evaluate']) == 0 and epochs['n'] == 3
    assert (f'warning: train: {checkpoint} is missing; rerunning the stage'
            in capsys.readouterr().err)


def test_corrupt_checkpoint_with_resume(finished, epochs, capsys):
    checkpoint = finished / 'checkpoint.pt'
    _truncate(checkpoint)
    before = snapshot(finished)
    argv = ['train', SYNTHETIC, '--model', 'bpr', '--epochs', '2', '--no-progress',
            '--out', str(finished), '--resume']
    assert main(argv) == 2
    assert error_line(capsys) == (f'mllmrec train: error: {checkpoint}: not a readable '
                                  'checkpoint (corrupt or truncated); delete it or rerun '
                                  'without --resume')
    # Not even stages.json changed, and no epoch ran.
    assert snapshot(finished) == before and epochs['n'] == 1
    checkpoint.unlink()
    assert main(argv) == 0 and epochs['n'] == 3


def test_corrupt_stage_outputs_are_rerun(tmp_path, epochs, capsys):
    out = tmp_path / 'run'
    argv = [SYNTHETIC, '--out', str(out), '--prefer-backend', 'none', '--describe-backend',
            'none', '--no-progress', '--epochs', '1']
    assert main(['graph', *argv]) == 0
    features, graph = out / 'encode' / 'features.pt', out / 'graph' / 'item_graph.pt'
    kept = {p: p.read_bytes() for p in (features, graph)}
    capsys.readouterr()
    _truncate(features)
    graph.write_bytes(b'not a tensor file')
    assert main(['graph', *argv]) == 0
    err = capsys.readouterr().err
    assert f'warning: encode: {features} is corrupt or truncated; rerunning the stage' in err
    assert f'warning: graph: {graph} is corrupt or truncated; rerunning the stage' in err
    assert torch.equal(torch.load(features)['item_x'],
                       torch.load(_bytes_file(tmp_path, kept[features]))['item_x'])
    assert torch.equal(torch.load(graph)['edge_index'],
                       torch.load(_bytes_file(tmp_path, kept[graph]))['edge_index'])
    assert epochs['n'] == 0


def _bytes_file(tmp_path, data):
    path = tmp_path / f'kept-{len(data)}.pt'
    path.write_bytes(data)
    return path


def test_corrupt_run_records_are_rerun(finished, epochs, capsys):
    metrics = json.loads((finished / 'metrics.json').read_text())
    argv = ['train', SYNTHETIC, *BPR, '--out', str(finished)]
    (finished / 'metrics.json').write_text('{"val": ')
    assert main(['report', str(finished)]) == 2
    assert error_line(capsys) == (f'mllmrec report: error: {finished / "metrics.json"}: not '
                                  'a readable metrics.json (corrupt or truncated); rerun the '
                                  'run with --force evaluate to write it again')
    assert main(argv) == 0
    assert (f'warning: evaluate: {finished / "metrics.json"} is corrupt or truncated; '
            'rerunning the stage') in capsys.readouterr().err
    again = json.loads((finished / 'metrics.json').read_text())
    assert again['test'] == metrics['test'] and epochs['n'] == 1
    (finished / 'stages.json').write_text('[1, 2')
    assert main(argv) == 0
    assert (f'warning: {finished / "stages.json"} is unreadable; every stage reruns'
            in capsys.readouterr().err)
    assert epochs['n'] == 2


# --------------------------------------------------------------------------
# 4. ``mllmrec run`` says how many users got an LLM preference, and fails
#    when none did.
# --------------------------------------------------------------------------

class FailFirst(FakeBackend):
    r"""Fails its first :obj:`failures` requests."""
    def __init__(self, failures):
        super().__init__()
        self.failures = failures

    def generate_many(self, requests, on_result):
        for index, request in enumerate(requests):
            self.calls += 1
            if self.calls <= self.failures:
                on_result(index, BackendError('scripted failure'))
            else:
                on_result(index, Generation(f'pref: {request.prompt[-12:]}',
                                            completion_tokens=4))


def test_no_llm_preference_fails_the_run(tmp_path, epochs, monkeypatch, capsys):
    out = tmp_path / 'run'
    monkeypatch.setattr(BackendSpec, 'build', lambda self: FailFirst(failures=10 ** 6))
    argv = ['run', SYNTHETIC, '--out', str(out), *LLM]
    summary = out / 'prefer' / 'summary.json'
    assert main(argv) == 1
    assert error_line(capsys) == (
        'mllmrec run: error: no user got an LLM preference: 0/4 users, all fell back to '
        f'the stand-in (4 failures; see {summary}); fix the preference backend and rerun '
        '(finished generations are kept), or pass --allow-stand-in to train on the stand-in')
    assert json.loads(summary.read_text())['failures'] == 4
    assert not (out / 'encode').exists() and epochs['n'] == 0
    # --allow-stand-in goes on, and says so.
    assert main(argv + ['--allow-stand-in']) == 0
    assert (f'warning: preferences: 0/4 users got an LLM preference, 4 fell back to the '
            f'stand-in (4 failures; see {summary})') in capsys.readouterr().err
    inputs = json.loads((out / 'metrics.json').read_text())['inputs']
    assert inputs['users_with_llm_preference'] == 0 and epochs['n'] == 1


def test_some_llm_preferences_fail_and_a_rerun_retries_them(tmp_path, epochs, monkeypatch,
                                                            capsys):
    out = tmp_path / 'run'
    summary = out / 'prefer' / 'summary.json'
    monkeypatch.setattr(BackendSpec, 'build', lambda self: FailFirst(failures=2))
    argv = ['run', SYNTHETIC, '--out', str(out), *LLM]
    assert main(argv) == 0
    assert (f'warning: preferences: 2/4 users got an LLM preference, 2 fell back to the '
            f'stand-in (2 failures; see {summary})') in capsys.readouterr().err
    assert json.loads((out / 'metrics.json').read_text())['inputs'][
        'users_with_llm_preference'] == 2
    # The failed users are retried (the cache answers the others) and the
    # features are encoded anew: no stale stand-in is kept.
    again = FakeBackend()
    monkeypatch.setattr(BackendSpec, 'build', lambda self: again)
    assert main(argv) == 0
    assert (f'preferences: 4/4 users got an LLM preference, 0 fell back to the stand-in '
            f'(0 failures; see {summary})') in capsys.readouterr().err.splitlines()
    assert again.calls == 2
    assert json.loads((out / 'metrics.json').read_text())['inputs'][
        'users_with_llm_preference'] == 4


# --------------------------------------------------------------------------
# 5. --inter-file, and options that must be positive.
# --------------------------------------------------------------------------

@pytest.fixture
def two_inters(tmp_path):
    from mllmrec_pyg.data import synthetic_folder
    root = tmp_path / 'two'
    shutil.copytree(synthetic_folder(SYNTHETIC), root)
    shutil.copy(root / 'synthetic.inter', root / 'other.inter')
    return root


def test_inter_file_option(two_inters, tmp_path, epochs, capsys):
    assert main(['stats', str(two_inters)]) == 2
    line = error_line(capsys)
    assert line.startswith(f'mllmrec stats: error: {two_inters}: expected one <name>.inter')
    assert "found ['other.inter', 'synthetic.inter']" in line and 'inter_file' in line
    assert main(['stats', str(two_inters), '--inter-file', 'other.inter']) == 0
    capsys.readouterr()
    out = tmp_path / 'run'
    assert main(['train', str(two_inters), *BPR, '--out', str(out),
                 '--inter-file', 'other.inter']) == 0
    assert json.loads((out / 'config.json').read_text())['dataset']['inter_file'] == (
        'other.inter')
    assert main(['run', str(two_inters), *LLM, '--out', str(tmp_path / 'b'),
                 '--inter-file', 'missing.inter']) == 2
    assert f'{two_inters / "missing.inter"}' in error_line(capsys)
    assert epochs['n'] == 1


@pytest.mark.parametrize('command, option, value, message', [
    ('train', '--epochs', '0', 'must be an integer >= 1'),
    ('train', '--patience', '-1', 'must be an integer >= 0'),
    ('run', '--epochs', 'x', 'must be an integer >= 1'),
    ('run', '--max-new-tokens', '0', 'must be an integer >= 1'),
    ('run', '--timeout', '0', 'must be a number > 0'),
    ('run', '--concurrency', '-2', 'must be an integer >= 1'),
])
def test_options_must_be_positive(command, option, value, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, SYNTHETIC, '--model', 'bpr', '--out', str(tmp_path), option, value]
             if command == 'train' else
             [command, SYNTHETIC, '--out', str(tmp_path), option, value])
    assert info.value.code == 2
    assert error_line(capsys) == (f'mllmrec {command}: error: argument {option}: '
                                  f'{message} (got {value!r})')


# --------------------------------------------------------------------------
# 6. Config errors: one line naming the file and the key.
# --------------------------------------------------------------------------

@pytest.mark.parametrize('text, section, key, closest', [
    ('graph:\n  alpah: 0.5\n', 'graph', 'alpah', 'alpha'),
    ('dataset:\n  splt: mmrec\n', 'dataset', 'splt', 'split'),
])
def test_misspelt_config_key(text, section, key, closest, finished, epochs, capsys):
    from mllmrec_pyg.experiment.config import dataset_keys, graph_keys

    config = finished.parent / 'config.yaml'
    config.write_text(text)
    before = snapshot(finished)
    assert main(['train', SYNTHETIC, *BPR, '--out', str(finished),
                 '--config', str(config)]) == 2
    valid = sorted(graph_keys() if section == 'graph' else dataset_keys())
    assert error_line(capsys) == (
        f"mllmrec train: error: {config}: unknown key '{section}.{key}' (did you mean "
        f"'{section}.{closest}'? valid: {', '.join(valid)})")
    assert snapshot(finished) == before and epochs['n'] == 1


@pytest.mark.parametrize('name, content, message', [
    ('bad.yaml', 'graph:\n\talpha: 0.5\n',
     "{path}, line 2: invalid YAML (found character '\\t' that cannot start any token)"),
    ('bad.yaml', 'graph: {alpha: 0.5\n',
     "{path}, line 2: invalid YAML (expected ',' or '}}', but got '<stream end>')"),
    ('binary.json', b'\xff\xfe\x00',
     '{path}: not a text file; a config is JSON or YAML (UTF-8)'),
    ('folder.json', None, '{path}: is a folder, not a config file (JSON or YAML)'),
])
def test_unreadable_config_file(name, content, message, finished, epochs, capsys):
    path = finished.parent / name
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = snapshot(finished)
    assert main(['train', SYNTHETIC, *BPR, '--out', str(finished),
                 '--config', str(path)]) == 2
    assert error_line(capsys) == 'mllmrec train: error: ' + message.format(path=path)
    assert snapshot(finished) == before and epochs['n'] == 1
