#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# gpu_swap_round.sh — on a GPU machine with .gpubin/ carried: one call for
# the swapped tile (gemm_engine.cuh Cfg::kSwap: wide M-tiles of at most 64
# rows as C^T = B . A^T), session 16:
#   1. test_gemm (swapped against the reference, unswapped too, split
#      parts, hooks) and the tests whose layer1 GEMMs swap (test_forward:
#      fused = composed bits; test_graph_replay; test_backward), W = 1 and
#      loopback 2/4/8;
#   2. the layer GEMMs against cuBLAS with --ab (comet_unswapped_tflops:
#      the same launch without swapped tiles);
#   3. the W = 1 forward matrix, both routings.
#   usage: scripts/gpu_swap_round.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
export MULTI_TESTS=${MULTI_TESTS:-"test_forward test_graph_replay test_backward"}
export SINGLE_TESTS=${SINGLE_TESTS:-"test_gemm"}
export BENCH_LIMIT=${BENCH_LIMIT:-200}
OUT=${OUT:-$PWD/gpu-out} scripts/gpu_carried.sh tests,gemmlayer,bench0
