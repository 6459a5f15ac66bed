import pytest
import torch

from lss_cl.budget import Shape, ipc_budget_floats, lowrank_floats, solve_lowrank
from lss_cl.cli import main
from lss_cl.errors import ConfigError
from lss_cl.synthetic import Labels, LowRankSet, reconstruct, svd_init

CIFAR10 = Shape(3, 32, 32, 10)


@pytest.mark.parametrize("rank,groups,m,floats", [(4, 15, 22, 30660), (8, 4, 30, 30384),
                                                  (12, 4, 12, 30432), (16, 3, 9, 30222)])
def test_paper_table2(rank, groups, m, floats):
    assert ipc_budget_floats(CIFAR10, 1) == 30720
    plan = solve_lowrank(CIFAR10, 30720, rank, groups)
    assert (plan.per_group, plan.floats) == (m, floats)
    assert plan.bytes == floats * 4
    assert solve_lowrank(CIFAR10, 30720, rank, groups, storage_dtype="float16").bytes == floats * 2


def test_hard_labels_not_counted_and_budget_errors():
    assert lowrank_floats(CIFAR10, 8, 4, 30, soft_labels=False) == 30384 - 4 * 30 * 10
    with pytest.raises(ConfigError, match=r"^rank: got 33"):
        solve_lowrank(CIFAR10, 30720, 33, 4)
    with pytest.raises(ConfigError, match="raise the budget"):
        solve_lowrank(CIFAR10, 5000, 8, 4)


def test_budget_cli_prints_table2(capsys):
    assert main(["budget", "--dataset", "cifar10", "--ipc", "1"]) == 0
    out = capsys.readouterr().out
    for row in ("| 4 | 15 | 22 | 330 | 30660 |", "| 8 | 4 | 30 | 120 | 30384 |",
                "| 12 | 4 | 12 | 48 | 30432 |", "| 16 | 3 | 9 | 27 | 30222 |"):
        assert row in out
    assert main(["budget", "--floats", "100", "--rank", "8"]) == 2
    assert capsys.readouterr().out == ""  # nothing printed before the error


def test_reconstruction_is_u_sigma_vt_per_channel():
    g = torch.Generator().manual_seed(0)
    U, S, V = torch.randn(2, 3, 8, 4, generator=g), torch.randn(2, 5, 3, 4, 4, generator=g), torch.randn(2, 3, 6, 4, generator=g)
    x = reconstruct(U, S, V)
    assert x.shape == (10, 3, 8, 6)
    i, j, c = 1, 3, 2
    torch.testing.assert_close(x[i * 5 + j, c], U[i, c] @ S[i, j, c] @ V[i, c].T)


def test_svd_init_is_rank_r_projection():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(12, 3, 16, 16, generator=g)
    U, S, V = svd_init(real, groups=3, rank=5)
    x = reconstruct(U, S, V)
    for idx in (0, 7, 11):
        grp = idx // 4
        for c in range(3):
            Ug, Vg = U[grp, c], V[grp, c]
            torch.testing.assert_close(Ug.T @ Ug, torch.eye(5), atol=1e-5, rtol=0)
            proj = Ug @ Ug.T @ real[idx, c] @ Vg @ Vg.T
            torch.testing.assert_close(x[idx, c], proj, atol=1e-4, rtol=1e-4)
    # full rank reproduces the images exactly
    U, S, V = svd_init(real, groups=3, rank=16)
    torch.testing.assert_close(reconstruct(U, S, V), real, atol=1e-4, rtol=1e-4)


def test_gradients_reach_factors_and_labels():
    g = torch.Generator().manual_seed(0)
    shape = Shape(3, 8, 8, 4)
    U, S, V = svd_init(torch.randn(8, 3, 8, 8, generator=g), 2, 3)
    labels = Labels(torch.arange(8) % 4, 4, soft=True, logits=torch.randn(8, 4, generator=g))
    syn = LowRankSet(U, S, V, labels, shape)
    loss = (syn.images() ** 2).sum() + (syn.labels() * torch.arange(4.0)).sum()
    loss.backward()
    for p in (syn.U, syn.S, syn.V, syn.label_set.logits):
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert syn.num_floats() == lowrank_floats(shape, 3, 2, 4, True)
    assert {n for n, _ in syn.named_parameters()} == {"U", "S", "V", "label_set.logits"}
