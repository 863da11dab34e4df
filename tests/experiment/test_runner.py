import json

from mllmrec_pyg.experiment import build_config, run_experiment
from mllmrec_pyg.train import Trainer

SYNTHETIC = 'synthetic:users=40,items=30,seed=5'



def _config(*overrides, model='mllmrec'):
    return build_config(SYNTHETIC, model=model,
                        overrides=['train.max_epochs=2', 'model.hidden_channels=16',
                                   'model.out_channels=8', *overrides]
                        if model == 'mllmrec' else ['train.max_epochs=2', *overrides])


def test_rerun_trains_nothing_and_returns_the_same_result(tmp_path, epochs):
    out = str(tmp_path / 'run')
    first = run_experiment(SYNTHETIC, _config(), out, progress=False)
    assert epochs['n'] == 2 and first.epochs_run == 2
    assert first.stages_run == ['graph', 'train', 'evaluate', 'report']
    again = run_experiment(SYNTHETIC, _config(), out, progress=False)
    assert epochs['n'] == 2 and again.epochs_run == 0 and again.model is None
    assert again.stages_skipped == ['graph', 'train', 'evaluate', 'report']
    assert again.test.summary == first.test.summary
    assert again.metrics == json.loads((tmp_path / 'run' / 'metrics.json').read_text())

    # A changed setting reruns what depends on it, and only that.
    changed = run_experiment(SYNTHETIC, _config('train.lr=0.01'), out, progress=False)
    assert epochs['n'] == 4 and changed.stages_skipped == ['graph']
    # --force train retrains (and re-evaluates) with nothing changed.
    forced = run_experiment(SYNTHETIC, _config('train.lr=0.01'), out, progress=False,
                            force=['train'])
    assert epochs['n'] == 6 and forced.stages_run == ['train', 'evaluate', 'report']
    assert forced.test.summary == changed.test.summary


def test_evaluate_rerun_reuses_the_trained_model(tmp_path, epochs):
    out = str(tmp_path / 'run')
    first = run_experiment(SYNTHETIC, _config(model='bpr'), out, progress=False)
    again = run_experiment(SYNTHETIC, _config(model='bpr'), out, progress=False,
                           force=['evaluate'])
    assert epochs['n'] == 2 and again.model is not None
    assert again.stages_skipped == ['train'] and again.test.summary == first.test.summary


def test_config_json_reproduces_the_run(tmp_path):
    first = run_experiment(SYNTHETIC, _config('graph.alpha=0.3', 'train.seed=3'),
                           str(tmp_path / 'a'), progress=False)
    config = build_config(config=str(tmp_path / 'a' / 'config.json'))
    assert config.graph['alpha'] == 0.3 and config.seed == 3
    second = run_experiment(None, config, str(tmp_path / 'b'), progress=False)
    assert second.test.summary == first.test.summary
    assert second.metrics['best_epoch'] == first.metrics['best_epoch']
    assert (tmp_path / 'a' / 'topk_test.tsv').read_text() == (
        tmp_path / 'b' / 'topk_test.tsv').read_text()


def test_runner_matches_a_hand_written_training_loop(tmp_path):
    # The runner adds no behaviour of its own: the same seed, model and
    # trainer give bit-identical metrics.
    from mllmrec_pyg.data import load_dataset
    from mllmrec_pyg.nn.models import build_model
    from mllmrec_pyg.train import seed_everything

    result = run_experiment(SYNTHETIC, _config(model='lightgcn'), None, progress=False)
    data = load_dataset(SYNTHETIC)
    seed_everything(2024)
    model = build_model('lightgcn', data)
    by_hand = Trainer(model, data, max_epochs=2, progress=False).fit()
    assert by_hand.test.summary == result.test.summary
    assert result.out_dir is None


def test_report_and_run_folder(tmp_path):
    out = tmp_path / 'run'
    run_experiment(SYNTHETIC, _config(), str(out), progress=False)
    for name in ('metrics.json', 'topk_test.tsv', 'config.json', 'per_user_val.npz',
                 'per_user_test.npz', 'log.csv', 'checkpoint.pt', 'report.md',
                 'stages.json', 'graph/item_graph.pt'):
        assert (out / name).exists(), name
    report = (out / 'report.md').read_text()
    assert 'user inputs from TRAINING interactions only' in report
    assert '| test |' in report and 'R@20' in report


def _two_modalities(tmp_path):
    # A tiny dataset with an image and an audio modality and no text.
    import numpy as np
    folder = tmp_path / 'two-mod'
    folder.mkdir()
    rng = np.random.default_rng(0)
    lines = ['userID\titemID\tx_label']
    for u in range(30):
        items = rng.choice(20, size=6, replace=False)
        lines += [f"{u}\t{i}\t{label}" for i, label in zip(items, [0, 0, 0, 0, 1, 2], strict=True)]
    (folder / 'two-mod.inter').write_text('\n'.join(lines) + '\n')
    np.save(folder / 'image_feat.npy', rng.normal(size=(20, 6)).astype(np.float32))
    np.save(folder / 'audio_feat.npy', rng.normal(size=(20, 4)).astype(np.float32))
    return str(folder)


def test_refined_graph_over_several_modalities(tmp_path):
    import pytest
    path = _two_modalities(tmp_path)
    for fusion in ('mix', 'concat'):
        config = build_config(path, model='freedom', overrides=[
            'train.max_epochs=1', 'model.item_graph=data', 'model.embedding_dim=8',
            'model.feat_embed_dim=8', 'graph.key=["image_feat","audio_feat"]',
            f'graph.fusion={fusion}', 'graph.alpha=0.0' if fusion == 'concat'
            else 'graph.alpha=[0.0,0.1]'])
        result = run_experiment(None, config, str(tmp_path / fusion), progress=False)
        assert f"fusion='{fusion}'" in result.metrics['inputs']['item_graph']
    with pytest.raises(ValueError, match=r"has no x to build the refined item graph from; "
                       r"set graph.key .*\(image_feat, audio_feat\)"):
        run_experiment(path, build_config(path, model='freedom', overrides=[
            'train.max_epochs=1', 'model.item_graph=data']), progress=False)
