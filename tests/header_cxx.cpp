/* SPDX-License-Identifier: Apache-2.0 */
// The public header compiles standalone as C++.
#include "comet.h"
int comet_header_cxx_check() { return COMET_VERSION_CODE; }
