import torch

from distill.batching import LengthGroupedBatches, PadCollator


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
    first = s.batches()
    assert sorted(i for b in first for i in b) == list(range(1000))
    assert LengthGroupedBatches(lengths, 16, seed=3, window=10).batches() == first
    s.set_epoch(1)
    assert s.batches() != first
    # Grouping: padding waste far below that of random batches.
    def waste(batches):
        return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)
    plain = LengthGroupedBatches(lengths, 16, seed=3, grouped=False).batches()
    assert waste(first) < 0.2 * waste(plain)


def test_eval_order_is_sequential_and_complete():
    s = LengthGroupedBatches([3, 1, 2, 5], batch_size=3, seed=0, shuffle=False)
    assert s.batches() == [[1, 2, 0], [3]]
