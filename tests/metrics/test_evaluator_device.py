import torch
from torch_geometric.testing import withDevice

from mllmrec_pyg.metrics import Evaluator

from .test_evaluator import EMB, toy_data


@withDevice
def test_evaluator_on_device_equals_cpu(device):
    evaluator = Evaluator(toy_data(), ks=(1, 3), batch_size=2)
    cpu = evaluator.evaluate(EMB)
    out = evaluator.evaluate(tuple(t.to(device) for t in EMB))
    for split in ('val', 'test'):
        assert out[split].users.tolist() == cpu[split].users.tolist()
        assert out[split].topk.tolist() == cpu[split].topk.tolist()
        assert out[split].summary == cpu[split].summary
    assert torch.equal(out['test'].per_user['recall@3'].cpu(),
                       cpu['test'].per_user['recall@3'])
