# edge-verify: `make demo` runs the product on the bundled model and sample photos; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-fast bench lint clean model

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: venv
	$(BIN)/python -m edge_verify.demo
	$(BIN)/python scripts/demo.py

test: venv
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow"

bench: venv
	$(BIN)/python -m bench.run

lint: venv
	$(BIN)/ruff check edge_verify converter tests bench
	$(BIN)/mypy edge_verify converter

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Rebuild the bundled default encoder from OpenCV Zoo's SFace with our own converter (needs ../shared).
SHARED ?= ../shared
model: venv
	$(BIN)/python -m converter.import_onnx $(SHARED)/models/face_recognition_sface_2021dec_int8bq.onnx build/sface.keras
	$(BIN)/python -m converter.export --int8 build/sface.keras --out edge_verify/models/sface_int8.tflite --name sface-int8
