import numpy as np
import pytest

from nlp_jax.data.root import resolve
from nlp_jax.eval.word_vectors import evaluate_analogies, evaluate_word_pairs, rank_average, spearman
from nlp_jax.models.word_vectors import WordVectors


def toy_vectors():
    """man:woman :: king:queen along a 'gender' axis; 'kingly' sits close to king to tempt 3CosAdd."""
    base = {"man": [1, 0, 0], "woman": [1, 1, 0], "king": [1, 0, 1], "queen": [1, 1, 1],
            "kingly": [1, 0.05, 1.1], "apple": [-1, 0.2, -0.3], "boy": [0.9, 0, 0.1]}
    words = list(base)
    return WordVectors(words, np.array([base[w] for w in words], np.float32))


def test_analogies_exclude_question_words_and_count_coverage(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text(": family\nman woman king queen\nman woman boy girl\n: gram\nMan King woman queen\n")
    result = evaluate_analogies(toy_vectors(), questions, semantic_sections=1)
    fam = result["sections"]["family"]
    assert (fam["answered"], fam["questions"], fam["3cosadd"], fam["3cosmul"]) == (1, 2, 1.0, 1.0)
    assert result["total"]["coverage"] == pytest.approx(2 / 3)
    assert result["syntactic"]["3cosadd"] == 1.0  # case-insensitive; "queen" found even though "king" is banned


def test_restrict_vocab_removes_rare_words(tmp_path):
    questions = tmp_path / "q.txt"
    questions.write_text(": family\nman woman king queen\n")
    result = evaluate_analogies(toy_vectors(), questions, restrict_vocab=3)  # queen is 4th: out
    assert result["total"]["answered"] == 0 and result["total"]["coverage"] == 0.0


def test_rank_average_and_spearman():
    np.testing.assert_array_equal(rank_average(np.array([10, 20, 20, 5])), [2, 3.5, 3.5, 1])
    assert spearman(np.array([1, 2, 3, 4]), np.array([10, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4]), np.array([4, 3, 2, 1])) == pytest.approx(-1.0)


def test_word_pairs_skip_oov(tmp_path):
    pairs = tmp_path / "p.tsv"
    pairs.write_text("# header\nking\tqueen\t9\nman\tapple\t1\nman\tboy\t8\nzebra\tking\t3\n")
    result = evaluate_word_pairs(toy_vectors(), pairs)
    assert result["pairs"] == 4 and result["oov_ratio"] == pytest.approx(0.25)
    wv = toy_vectors()
    cos = [float(wv.unit[wv.index[a]] @ wv.unit[wv.index[b]]) for a, b in (("king", "queen"), ("man", "apple"),
                                                                           ("man", "boy"))]
    assert result["spearman"] == pytest.approx(spearman(np.array([9.0, 1.0, 8.0]), np.array(cos)))
    assert result["pearson"] == pytest.approx(np.corrcoef([9.0, 1.0, 8.0], cos)[0, 1])


def test_nearest():
    assert toy_vectors().nearest("king", k=1)[0][0] == "kingly"


@pytest.mark.peers
def test_matches_gensim_protocol_on_random_vectors():
    gensim = pytest.importorskip("gensim")
    rng = np.random.default_rng(0)
    sections = [line for line in resolve("word_eval/questions-words.txt").read_text().splitlines()]
    vocab = sorted({w.lower() for line in sections if not line.startswith(":") for w in line.split()})
    rng.shuffle(vocab)
    vocab = vocab[:700] + [f"filler{i}" for i in range(300)]
    vectors = rng.normal(size=(len(vocab), 16)).astype(np.float32)
    index = {w: i for i, w in enumerate(vocab)}
    planted = 0
    for line in sections:  # plant structure so that some answers are right: d = b - a + c
        q = line.lower().split()
        if not line.startswith(":") and all(w in index and index[w] < 800 for w in q) and planted < 40:
            a, b, c, d = (index[w] for w in q)
            vectors[d] = vectors[b] - vectors[a] + vectors[c]
            planted += 1
    kv = gensim.models.KeyedVectors(16)
    kv.add_vectors(vocab, vectors)
    ours = WordVectors(vocab, vectors)
    path = resolve("word_eval/questions-words.txt")
    theirs_total, theirs_sections = kv.evaluate_word_analogies(str(path), restrict_vocab=800)
    mine = evaluate_analogies(ours, path, restrict_vocab=800)
    gensim_total = [s for s in theirs_sections if s["section"] == "Total accuracy"][0]
    answered = len(gensim_total["correct"]) + len(gensim_total["incorrect"])
    assert mine["total"]["answered"] == answered
    assert mine["total"]["3cosadd"] == pytest.approx(theirs_total) and theirs_total > 0
    pairs = resolve("word_eval/wordsim353.tsv")
    (_, _), (rho, _), oov = kv.evaluate_word_pairs(str(pairs), restrict_vocab=800)
    got = evaluate_word_pairs(ours, pairs, restrict_vocab=800)
    assert got["spearman"] == pytest.approx(rho, abs=1e-6)
    assert got["oov_ratio"] * 100 == pytest.approx(oov)


@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_save_and_load_round_trip_in_word2vec_format(tmp_path, binary):
    words = [*toy_vectors().words, "naïve"]  # (a word of more than one UTF-8 byte)
    wv = WordVectors(words, np.random.default_rng(0).standard_normal((len(words), 3)).astype(np.float32))
    wv.save(tmp_path / "v", binary=binary)
    back = WordVectors.load(tmp_path / "v", binary=binary)
    assert back.words == wv.words
    np.testing.assert_array_equal(back.vectors, wv.vectors)  # 9 significant digits round-trip a float32 exactly
    assert (tmp_path / "v").read_bytes().split(b"\n")[0] == b"8 3"
    with pytest.raises(ValueError, match="whitespace"):
        WordVectors(["a b"], np.zeros((1, 2), np.float32)).save(tmp_path / "bad.txt", binary=binary)
    (tmp_path / "cut").write_bytes((tmp_path / "v").read_bytes()[:-20])
    with pytest.raises(ValueError, match="cut: (line 9 has|ends at word 8 of 8)"):
        WordVectors.load(tmp_path / "cut", binary=binary)


@pytest.mark.peers
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
def test_gensim_reads_our_word2vec_formats_and_we_read_its(tmp_path, binary):
    gensim = pytest.importorskip("gensim")
    wv = toy_vectors()
    wv.save(tmp_path / "v", binary=binary)
    kv = gensim.models.KeyedVectors.load_word2vec_format(str(tmp_path / "v"), binary=binary)
    assert kv.index_to_key == wv.words
    np.testing.assert_array_equal(kv.vectors, wv.vectors)
    kv.save_word2vec_format(str(tmp_path / "g"), binary=binary)
    back = WordVectors.load(tmp_path / "g", binary=binary)
    assert back.words == wv.words and np.array_equal(back.vectors, kv.vectors)
