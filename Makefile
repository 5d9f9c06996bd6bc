# SPDX-License-Identifier: Apache-2.0
# Top-level entry points: `make` builds, `make test` builds and runs the
# tests, `make bench` runs the benchmark on every visible GPU, `make install
# PREFIX=...` installs (headers, libraries, the comet command, CMake package,
# pkg-config). NCCL_HOME=... picks another NCCL (also after the first build).
BUILD ?= build
TYPE ?= Release
JOBS ?= $(shell nproc)
PREFIX ?= /usr/local
BENCH_ARGS ?= --model mixtral-8x7b --check
CMAKE_ARGS = -DCMAKE_BUILD_TYPE=$(TYPE) $(if $(NCCL_HOME),-DNCCL_HOME=$(NCCL_HOME))

.PHONY: all configure test bench install clean
all: configure
	cmake --build $(BUILD) -j $(JOBS)

configure:
	cmake -S . -B $(BUILD) $(CMAKE_ARGS)

test: all
	cd $(BUILD) && ctest --output-on-failure

bench: all
	NCCL_NVLS_ENABLE=0 ./$(BUILD)/comet bench $(BENCH_ARGS)

install: all
	cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD)
