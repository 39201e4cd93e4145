/* SPDX-License-Identifier: Apache-2.0 */
/* weft's version, as weft_build_info and --version report it; the build may
 * set it (-DWEFT_VERSION=...). */
#ifndef WEFT_VERSION_H
#define WEFT_VERSION_H

#ifndef WEFT_VERSION
#define WEFT_VERSION "dev"
#endif

#endif
