import torch

from distill.mlm_masking import mask_tokens


def test_rates_80_10_10_and_specials_never_chosen():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (400, 128), generator=g)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True  # [CLS] ... [SEP]
    special[:, 100:] = True  # padding
    out, labels = mask_tokens(ids, special, mask_id=3, vocab_size=1000, generator=g)
    chosen = labels != -100
    assert not chosen[special].any() and (out[special] == ids[special]).all()
    n = int((~special).sum())
    assert abs(chosen.sum().item() / n - 0.15) < 0.005
    c = chosen.sum().item()
    masked = (out[chosen] == 3).sum().item() / c
    kept = (out[chosen] == ids[chosen]).sum().item() / c
    assert abs(masked - 0.8) < 0.01
    # 10% random tokens, plus the ~0.1% of those that draw the original token back
    assert abs(kept - (0.1 + 0.1 / 1000)) < 0.01
    assert (labels[chosen] == ids[chosen]).all()
    assert (out[~chosen] == ids[~chosen]).all()


def test_seeded():
    ids = torch.arange(200).reshape(4, 50) + 10
    special = torch.zeros_like(ids, dtype=torch.bool)
    a = mask_tokens(ids, special, 3, 300, torch.Generator().manual_seed(5))
    b = mask_tokens(ids, special, 3, 300, torch.Generator().manual_seed(5))
    c = mask_tokens(ids, special, 3, 300, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[1], c[1])
