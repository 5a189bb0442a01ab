import torch

from textcls_core.text.batching import BucketBatchSampler, EncodedDataset, collate_batch
from textcls_core.text.tokenize import PAD_ID, UNK_ID, build_vocab, encode_tokens, oov_rate, segment_texts


def test_segment_drops_whitespace_tokens():
    toks = segment_texts(["我爱 北京天安门", ""])
    assert toks[0] == ["我", "爱", "北京", "天安门"] and toks[1] == []


def test_vocab_specials_min_freq_and_cap():
    itos = build_vocab([["好", "好", "差"], ["好", "差", "贵"]], min_freq=2, max_size=50)
    assert itos == ["<pad>", "<unk>", "好", "差"]
    assert build_vocab([["a", "a", "b", "b", "c"]], min_freq=1, max_size=3) == ["<pad>", "<unk>", "a"]


def test_encode_truncates_and_maps_unknown():
    stoi = {"<pad>": 0, "<unk>": 1, "好": 2}
    assert encode_tokens([["好", "新词", "好", "好"]], stoi, max_len=3) == [[2, UNK_ID, 2]]
    assert oov_rate([["好", "新词"]], stoi) == 0.5


def test_collate_pads_to_batch_longest_capped_and_min_len():
    ids, labels = collate_batch([([5, 6, 7], 1), ([8], 0)], max_len=10)
    assert ids.tolist() == [[5, 6, 7], [8, PAD_ID, PAD_ID]]
    assert labels.dtype == torch.long and labels.shape == (2,)  # 1-D long targets for cross_entropy
    ids, _ = collate_batch([(list(range(2, 30)), 0)], max_len=10)
    assert ids.shape == (1, 10)
    ids, _ = collate_batch([([], 0), ([3], 1)], max_len=10, min_len=4)
    assert ids.tolist() == [[0, 0, 0, 0], [3, 0, 0, 0]]


def test_bucket_sampler_covers_each_index_once_with_similar_lengths():
    lengths = [i % 50 + 1 for i in range(1000)]
    sampler = BucketBatchSampler(lengths, batch_size=32, generator=torch.Generator().manual_seed(0))
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    assert sorted(i for b in batches for i in b) == list(range(1000))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 10  # random batches would spread over ~45
    again = list(BucketBatchSampler(lengths, 32, torch.Generator().manual_seed(0)))
    assert again == batches


def test_dataset_rejects_length_mismatch():
    import pytest

    with pytest.raises(ValueError):
        EncodedDataset([[1], [2]], [0])


def test_parallel_segmentation_equals_sequential_in_order():
    texts = ["我爱北京天安门", "", "今天 天气 很好", "质量太差了，很失望", "物流很快"] * 8
    sequential = segment_texts(texts)
    assert segment_texts(texts, workers=2, min_parallel=0) == sequential  # a pool of 2 spawned processes, 8 chunks
    assert segment_texts(texts, workers=2) == sequential  # below min_parallel: one process
    assert sequential[0] == ["我", "爱", "北京", "天安门"] and sequential[1] == []


def test_shared_segmentation_segments_each_text_once(monkeypatch):
    """An ensemble's members read the same cleaned texts: inside shared_segmentation() jieba runs once per text,
    with the same words as outside it, and nothing is remembered after the block."""
    import textcls_core.text.tokenize as tok

    calls = []
    real = tok._segment
    monkeypatch.setattr(tok, "_segment", lambda texts, workers, min_parallel: (calls.append(list(texts)),
                                                                               real(texts, workers, min_parallel))[1])
    texts = ["今天天气很好", "我喜欢这家店", "今天天气很好"]
    plain = tok.segment_texts(texts)
    with tok.shared_segmentation():
        first = tok.segment_texts(texts)
        first[0].append("改动")  # a caller changing its copy must not change what the next member gets
        second = tok.segment_texts(texts[:2] + ["新的句子"])
    assert second[:2] == plain[:2] and first[1:] == plain[1:]
    assert calls == [texts, ["今天天气很好", "我喜欢这家店"], ["新的句子"]]
    tok.segment_texts(texts)
    assert len(calls) == 4


AWKWARD = [
    "我爱北京天安门", "", "   ", "质量太差了，很失望！！！", "物流很快😀😀下次还来", "iPhone15 Pro很好用, 价格9.9%off",
    "C++和C#都学过", "a.b_c%d-e&f+g", "\ud800孤立代理", "全角ＡＢＣ１２３测试", "tab\t分隔\n换行\r\n回车", "中文English混合text",
    "繁體中文測試一下", "。。。", "好" * 300, ("不错。" * 400)[:2000], "看看<URL>和<PHONE>", "😀", "12345678901234567890",
]


def test_block_memo_gives_jiebas_words_for_every_text():
    """The memo segments block by block: the same words as jieba.lcut (whitespace tokens dropped) on every text,
    the first time and when every block is remembered."""
    import jieba

    from textcls_core.text.tokenize import _BlockMemo

    expected = [[w for w in jieba.lcut(t) if w.strip()] for t in AWKWARD]
    memo = _BlockMemo()
    assert [memo.segment(t) for t in AWKWARD] == expected
    assert [memo.segment(t) for t in AWKWARD] == expected  # now from the memo
    assert memo.words, "blocks were remembered"
    # a text changed in one place: its other blocks come from the memo, the words still equal jieba's
    changed = ["质量太差了，很满意！！！", "物流很快😀😀下次不来", ("不错。" * 400)[:1999] + "好"]
    assert [memo.segment(t) for t in changed] == [[w for w in jieba.lcut(t) if w.strip()] for t in changed]


def test_block_memo_is_bounded():
    """Long blocks are not kept, and the memo empties itself before its kept blocks pass MAX_CHARS characters."""
    from textcls_core.text.tokenize import _BlockMemo

    memo = _BlockMemo()
    memo.MAX_CHARS = 100
    memo.segment("好" * 300)  # one block longer than MAX_BLOCK
    assert memo.words == {} and memo.chars == 0
    for i in range(200):
        memo.segment(f"第{i}个句子，今天天气很好")
        assert memo.chars <= 100 and sum(map(len, memo.words)) == memo.chars
    assert 0 < len(memo.words) < 200


def test_block_memo_off_by_environment(monkeypatch):
    """TEXTCLS_SEGMENT_MEMO_CHARS=0 keeps nothing (benchmarks time jieba's own work), with the same words."""
    import jieba

    from textcls_core.text.tokenize import _BlockMemo

    monkeypatch.setenv("TEXTCLS_SEGMENT_MEMO_CHARS", "0")
    memo = _BlockMemo()
    assert memo.segment("今天天气很好，我很开心") == [w for w in jieba.lcut("今天天气很好，我很开心") if w.strip()]
    assert memo.words == {} and memo.chars == 0


def test_cold_segmentation_keeps_nothing_and_restores_the_memo():
    """The evaluation's latency figures are timed cold: inside the block nothing is remembered, afterwards the
    process's memo works again."""
    import textcls_core.text.tokenize as tok

    tok.segment_texts(["今天天气很好，我很开心"])
    assert "今天天气很好" in tok._MEMO.words
    with tok.cold_segmentation():
        assert tok._MEMO.words == {}
        tok.segment_texts(["物流很快，下次还来"])
        assert tok._MEMO.words == {}
    tok.segment_texts(["物流很快，下次还来"])
    assert "物流很快" in tok._MEMO.words
