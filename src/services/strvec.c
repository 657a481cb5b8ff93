#include "services/strvec.h"

#include <stdlib.h>
#include <string.h>

#include "base/mem.h"

void strvec_push(strvec *s, char *str)
{
	if (!str || s->failed) {
		s->failed = true;
		mem_free(str);
		return;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 16;
		char **v = mem_realloc(s->v, cap * sizeof(*v));
		if (!v) {
			s->failed = true;
			mem_free(str);
			return;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = str;
}

void strvec_free(strvec *s)
{
	for (size_t i = 0; i < s->n; i++)
		mem_free(s->v[i]);
	mem_free(s->v);
	*s = (strvec){0};
}

bool strvec_has(const strvec *s, const char *str)
{
	for (size_t i = 0; i < s->n; i++)
		if (!strcmp(s->v[i], str))
			return true;
	return false;
}
