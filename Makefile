# make run   installs what is missing, builds, and runs lpcc on the bundled model
# make test  installs what is missing, builds, and runs the whole test suite
BUILD ?= build
JOBS ?= $(shell nproc)
MODEL ?= models/seed_16x8192.onnx
# The seed paper's 16-layer model on 16 H100s at 16 tokens a step, compared
# with tensor x pipeline parallelism (TP8 x PP2).
ARGS ?= --dim batch=16 --dim seq=1 --dtype fp16 --target h100 --algo throughput --cards 16 \
        --compare tp=8,pp=2

.PHONY: all setup build run test test-sanitize fuzz bench clean

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
	@$(MAKE) --no-print-directory fuzz test-sanitize

# The unit tests again under AddressSanitizer + UndefinedBehaviorSanitizer.
test-sanitize: setup
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DLPCC_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)-asan -j $(JOBS)
	cd $(BUILD)-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j $(JOBS) -L unit

# The loader's libFuzzer target, for a short budget.
FUZZ_SECONDS ?= 60
fuzz: setup
	@cmake -S . -B $(BUILD)-fuzz -DCMAKE_C_COMPILER=clang -DLPCC_FUZZ=ON -DLPCC_TESTS=OFF >/dev/null
	@cmake --build $(BUILD)-fuzz -j $(JOBS) --target fuzz_load
	bash fuzz/run.sh $(BUILD)-fuzz/fuzz/fuzz_load $(FUZZ_SECONDS)

bench: build
	bash bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD)-asan $(BUILD)-fuzz out
