/* SPDX-License-Identifier: Apache-2.0 */
/* The public header compiles standalone as strict C11. */
#include "comet.h"
int comet_header_c11_check(void) { return COMET_VERSION_CODE; }
