/* SPDX-License-Identifier: Apache-2.0 */
/* Aligned text tables (table.h). */
#include <stdlib.h>
#include <string.h>

#include "table.h"

void table_init(struct table *t, size_t ncols, const char *const *header)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols < TABLE_COLS_MAX ? ncols : TABLE_COLS_MAX;
	table_row(t, header);
}

void table_row(struct table *t, const char *const *cells)
{
	if (t->nrows == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		char **c = realloc(t->cells, cap * t->ncols * sizeof(*c));

		if (!c)
			return;
		t->cells = c;
		t->cap = cap;
	}
	for (size_t i = 0; i < t->ncols; i++)
		t->cells[t->nrows * t->ncols + i] = strdup(cells[i] && cells[i][0] ? cells[i] : "-");
	t->nrows++;
}

void table_print(const struct table *t, FILE *f)
{
	size_t w[TABLE_COLS_MAX] = { 0 };

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];
			size_t n = s ? strlen(s) : 0;

			if (n > w[c])
				w[c] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *s = t->cells[r * t->ncols + c];

			if (c + 1 < t->ncols)
				fprintf(f, "%-*s  ", (int)w[c], s ? s : "?");
			else
				fprintf(f, "%s\n", s ? s : "?");
		}
	}
}

void table_release(struct table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}
