# Top-level entry points: `make` builds, `make test` builds and runs the
# tests, `make bench` runs the benchmark on this machine's GPUs.
BUILD ?= build
TYPE ?= Release
JOBS ?= $(shell nproc)
BENCH_ARGS ?= --model mixtral-8x7b --gpus 4 --check

.PHONY: all configure test bench clean
all: configure
	cmake --build $(BUILD) -j $(JOBS)

configure:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(TYPE) > /dev/null

test: all
	cd $(BUILD) && ctest --output-on-failure

bench: all
	NCCL_NVLS_ENABLE=0 ./$(BUILD)/comet bench $(BENCH_ARGS)

clean:
	rm -rf $(BUILD)
