import numpy as np
import pytest
import torch

from distill.batching import LengthGroupedBatches, PadCollator, pad_ids


def test_pad_collator_pads_to_batch_longest():
    items = [{"input_ids": [5, 6, 7], "token_type_ids": [0, 0, 0], "labels": torch.tensor(1), "index": 0},
             {"input_ids": [5], "token_type_ids": [0], "labels": torch.tensor(0), "index": 1}]
    b = PadCollator(pad_id=0)(items)
    assert b["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [1, 0] and b["index"].tolist() == [0, 1]


def test_length_grouped_batches_cover_everything_once_and_repeat_per_seed_and_epoch():
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(1, 100, (1000,), generator=g).tolist()
    s = LengthGroupedBatches(lengths, batch_size=16, seed=3, window=10)
    first = list(s)
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert list(LengthGroupedBatches(lengths, 16, seed=3, window=10)) == first
    s.set_epoch(1)
    assert list(s) != first
    # Grouping: padding waste far below that of random batches.
    def waste(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    plain = list(LengthGroupedBatches(lengths, 16, seed=3, grouped=False))
    assert waste(first) < 0.2 * waste(plain)


def test_eval_order_is_sequential_and_complete():
    s = LengthGroupedBatches([3, 1, 2, 5], batch_size=3, seed=0, shuffle=False)
    assert list(s) == [[1, 2, 0], [3]]


def reference_batches(lengths, batch_size, seed, epoch, grouped, shuffle, window):
    """The sampler as first written, in plain Python (sorted() over windows of the shuffled order)."""
    n = len(lengths)
    if not shuffle:
        order = sorted(range(n), key=lambda i: lengths[i]) if grouped else list(range(n))
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    if grouped:
        span = batch_size * window
        order = [i for s in range(0, n, span) for i in sorted(order[s:s + span], key=lambda i: lengths[i])]
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    if grouped:
        perm = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[p] for p in perm]
    return batches


@pytest.mark.parametrize("grouped,shuffle", [(True, True), (False, True), (True, False), (False, False)])
def test_numpy_sampler_gives_exactly_the_batches_of_the_python_reference(grouped, shuffle):
    # Many ties (lengths 1..6) so that the stability of the within-window sort matters; a ragged last window.
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(1, 7, (1037,), generator=g).tolist()
    for epoch in (0, 3):
        s = LengthGroupedBatches(lengths, 8, seed=5, grouped=grouped, shuffle=shuffle, window=7)
        s.set_epoch(epoch)
        assert list(s) == reference_batches(lengths, 8, 5, epoch, grouped, shuffle, 7)


def test_pad_ids_takes_lists_and_memory_mapped_rows_alike():
    rows = [np.array([7, 8, 9], dtype=np.uint16), [4], np.array([], dtype=np.uint16)]
    ids, lengths = pad_ids(rows, pad=1)
    assert ids.dtype == torch.long and ids.tolist() == [[7, 8, 9], [4, 1, 1], [1, 1, 1]]
    assert lengths.tolist() == [3, 1, 0]
