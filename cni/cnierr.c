/* SPDX-License-Identifier: Apache-2.0 */
/* Error messages into a caller's buffer, for cniconf, cninft and enroll. */
#include <stdarg.h>
#include <stdio.h>

#include "cnierr.h"

void cnierr_set(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
