/* SPDX-License-Identifier: Apache-2.0 */
/* Aligned text tables for weftctl's human output: a header row, then rows
 * of the same width; each column as wide as its widest cell. */
#ifndef CTL_TABLE_H
#define CTL_TABLE_H

#include <stdio.h>

#define TABLE_COLS_MAX 12

struct table {
	size_t ncols, nrows, cap;
	char **cells;			/* nrows x ncols, copies */
};

void table_init(struct table *t, size_t ncols, const char *const *header);
/* One row of ncols cells (NULL prints "-"). */
void table_row(struct table *t, const char *const *cells);
void table_print(const struct table *t, FILE *f);
void table_release(struct table *t);

#endif
