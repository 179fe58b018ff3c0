# make run   installs what is missing, builds, and runs lpcc on the bundled model
# make test  installs what is missing, builds, and runs the whole test suite
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?= models/seed_16x8192.onnx
# The seed paper's 16-layer model on 16 H100s at 16 tokens a step, compared
# with tensor x pipeline parallelism (TP8 x PP2).
ARGS ?= --dim batch=16 --dim seq=1 --dtype fp16 --target h100 --algo throughput --cards 16 \
        --compare tp=8,pp=2

.PHONY: all setup build run test test-python test-gpu test-sanitize fuzz bench clean

all: build

setup:
	@bash scripts/setup.sh

build: setup
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	./$(BUILD)/cli/lpcc $(MODEL) $(ARGS) -o out

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory test-python fuzz test-sanitize

# The Python package (pyproject.toml, python/): pip builds and installs it
# into a folder of the build (its CMake tree kept in $(BUILD)-py/cmake for
# quick rebuilds), and pytest checks it against the lpcc command.
PY_SITE = $(BUILD)-py/site
test-python: build
	@rm -rf $(PY_SITE)
	python3 -m pip install -q --no-deps --no-build-isolation -C build-dir=$(BUILD)-py/cmake --target $(PY_SITE) .
	PYTHONPATH=$(CURDIR)/$(PY_SITE) LPCC_BIN=$(CURDIR)/$(BUILD)/cli/lpcc \
	  python3 -m pytest tests/python -q -p no:cacheprovider

# On a machine with a CUDA GPU: the CUDA kernels against the reference
# kernels and every model on the GPU against ONNX Runtime (tests/gpu/run.sh).
test-gpu: build
	bash tests/gpu/run.sh $(BUILD)

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer,
# the Python tests against the sanitized lpcc. A sanitizer report exits 86,
# which no test mistakes for one of lpcc's own exit codes.
SANITIZE_ENV = ASAN_OPTIONS=detect_leaks=1:exitcode=86 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86
test-sanitize: setup
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DLPCC_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && $(SANITIZE_ENV) ctest --output-on-failure -j $(JOBS)

# The libFuzzer targets (the loader, then every later stage), sharing a
# budget of FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz: setup
	@cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DLPCC_FUZZ=ON -DLPCC_TESTS=OFF >/dev/null
	@cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_load fuzz_pipeline
	bash fuzz/run.sh $(BUILD)-fuzz/fuzz/fuzz_load $$(( $(FUZZ_SECONDS) / 2 ))
	bash fuzz/run.sh $(BUILD)-fuzz/fuzz/fuzz_pipeline $$(( $(FUZZ_SECONDS) - $(FUZZ_SECONDS) / 2 ))

# Every benchmark of bench/BENCHMARKS.md, on this machine.
bench: build
	bash bench/run.sh $(BUILD)
	bash bench/analysis_bench.sh $(BUILD)
	bash bench/footprint_bench.sh $(BUILD)
	./$(BUILD)/bench/partition_bench

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz $(BUILD)-py build-py out
