# edge-verify: `make demo` runs the product on the bundled model and sample photos; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv demo test test-fast bench lint clean model detector detect-recall liveness-models liveness-eval arm-check

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

bench: venv build/sface_fp32.tflite
	$(BIN)/python -m bench.run --max-side 320 --fp32 build/sface_fp32.tflite

# The product on emulated aarch64 (Debian arm64 bookworm under qemu-user, as Raspberry Pi OS 64-bit; needs
# root): doctor, the fast tests, encodings against x86, instructions per stage. docs/ARM.md says more.
arm-check: venv build/sface_fp32.tflite
	scripts/arm/check.sh

# The fp32 export of the same import, for the int8-vs-fp32 comparison (not bundled).
build/sface.keras:
	$(BIN)/python -m converter.import_onnx $(SHARED)/models/face_recognition_sface_2021dec_int8bq.onnx $@
build/sface_fp32.tflite: build/sface.keras
	$(BIN)/python -m converter.export --float build/sface.keras --out $@

lint: venv
	$(BIN)/ruff check edge_verify converter tests bench scripts
	$(BIN)/mypy edge_verify converter bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache

# Rebuild the bundled default encoder from OpenCV Zoo's SFace with our own converter (needs ../shared).
model: venv build/sface.keras
	$(BIN)/python -m converter.export --int8 build/sface.keras --out edge_verify/models/sface_int8.tflite --name sface-int8

# Rebuild the bundled LiteRT face detector from OpenCV Zoo's YuNet with our own converter (fp32, resizable
# input; docs/DETECTION.md says why not int8). build/yunet_int8.tflite is the int8 export, for comparison.
YUNET_ONNX := $(SHARED)/models/face_detection_yunet_2023mar_int8bq.onnx
build/yunet.keras:
	$(BIN)/python -m converter.import_onnx $(YUNET_ONNX) $@ --input-order BGR --input-size any --head raw
detector: venv build/yunet.keras
	$(BIN)/python -m converter.export --detector --float build/yunet.keras --out edge_verify/models/yunet.tflite --name yunet
build/yunet_int8.tflite: build/yunet.keras
	$(BIN)/python -m converter.export --detector --int8 build/yunet.keras --out $@

# Detection recall of both backends (LiteRT, OpenCV) on LFW, the bench frames and door-distance scenes.
detect-recall: venv
	$(BIN)/python -m bench.detect_recall

# Rebuild the bundled liveness models from ../shared/models/minifasnet with our own converter (docs/LIVENESS.md).
# The threshold and minimum face size in liveness/liveness.json are kept; `make liveness-eval` re-measures them.
LIVENESS := edge_verify/models/liveness
MINIFASNET := $(SHARED)/models/minifasnet
build/minifasnet_v2.keras:
	$(BIN)/python -m converter.import_onnx $(MINIFASNET)/MiniFASNetV2.onnx $@
build/minifasnet_v1se.keras:
	$(BIN)/python -m converter.import_onnx $(MINIFASNET)/MiniFASNetV1SE.onnx $@
liveness-models: venv build/minifasnet_v2.keras build/minifasnet_v1se.keras
	$(BIN)/python -m converter.export --int8 build/minifasnet_v2.keras --liveness-scale 2.7 \
		--out $(LIVENESS)/minifasnet_v2_int8.tflite --name minifasnet-v2-int8
	$(BIN)/python -m converter.export --int8 build/minifasnet_v1se.keras --liveness-scale 4.0 \
		--out $(LIVENESS)/minifasnet_v1se_int8.tflite --name minifasnet-v1se-int8

# Measure the bundled liveness models: NUAA, face sizes, temporal cues, synthetic LFW attacks, cost
# (bench/results/liveness-*.json; docs/LIVENESS.md). Thresholds are written only with --update-manifest.
liveness-eval: venv
	$(BIN)/python -m converter.pad_study onnx $(SHARED)/data/nuaa --json bench/results/liveness-onnx-vs-int8.json
	$(BIN)/python -m converter.evaluate --pad $(SHARED)/data/nuaa --json bench/results/liveness-nuaa.json \
		--plot bench/results/liveness-nuaa-det.png
	$(BIN)/python -m converter.pad_study sizes $(SHARED)/data/nuaa --json bench/results/liveness-sizes.json
	$(BIN)/python -m converter.pad_study motion $(SHARED)/data/nuaa --json bench/results/liveness-motion.json
	$(BIN)/python -m converter.attacks build/pad-lfw --n 200
	$(BIN)/python -m converter.evaluate --pad build/pad-lfw --no-loso --json bench/results/liveness-lfw-synthetic.json \
		--plot bench/results/liveness-lfw-synthetic-det.png
	$(BIN)/python -m bench.liveness --json bench/results/liveness-cost.json
