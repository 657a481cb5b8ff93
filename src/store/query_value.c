/* The values of requests as the compiler reads them: numbers and integers written as
 * strings, RFC 3339 times, durations. */
#include <math.h>

#include "store/query_int.h"

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

bool query_value_to_i64(double d, int64_t *out)
{
	if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || (double)(int64_t)d != d)
		return false;
	*out = (int64_t)d;
	return true;
}

/* -?[0-9]+ within int64; canonical additionally refuses leading zeros and "-0", so that
 * the text is exactly what proto3 JSON renders for the number. */
bool query_value_parse_int(const char *s, bool canonical, int64_t *out)
{
	bool neg = *s == '-';
	const char *p = s + neg;
	if (!is_digit(*p) || (canonical && *p == '0' && (p[1] || neg)))
		return false;
	uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; is_digit(*p); p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (limit - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (*p)
		return false;
	*out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return true;
}

/* A JSON number written as a string ("1.5e3"), finite. */
bool query_value_parse_number(const char *s, double *out)
{
	const char *p = s + (*s == '-');
	if (*p == '0')
		p++;
	else if (is_digit(*p))
		while (is_digit(*p))
			p++;
	else
		return false;
	if (*p == '.') {
		if (!is_digit(*++p))
			return false;
		while (is_digit(*p))
			p++;
	}
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (!is_digit(*p))
			return false;
		while (is_digit(*p))
			p++;
	}
	if (*p)
		return false;
	*out = strtod(s, NULL);
	return isfinite(*out);
}

static int digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!is_digit(s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = (int)(yoe + era * 400 + (*m <= 2));
}

#define TS_MIN (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define TS_MAX (253402300799LL) /* 9999-12-31T23:59:59Z */

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.f{1,9}](Z|+HH:MM|-HH:MM), within protobuf Timestamp's
 * range. */
bool query_value_parse_ts(const char *s, int64_t *secs, int32_t *nanos)
{
	/* The fixed part is read at fixed offsets. */
	if (strlen(s) < 20)
		return false;
	int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	if (y < 1 || s[4] != '-' || s[7] != '-' || mo < 1 || mo > 12 || d < 1)
		return false;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > mdays[mo - 1] + (mo == 2 && leap))
		return false;
	if (s[10] != 'T' && s[10] != 't')
		return false;
	int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
	if (h < 0 || h > 23 || s[13] != ':' || mi < 0 || mi > 59 || s[16] != ':' || se < 0 ||
	    se > 59)
		return false;
	const char *p = s + 19;
	int32_t ns = 0;
	if (*p == '.') {
		int n = 0;
		for (p++; is_digit(*p) && n < 9; p++, n++)
			ns = ns * 10 + (*p - '0');
		if (n == 0 || is_digit(*p))
			return false;
		for (; n < 9; n++)
			ns *= 10;
	}
	int64_t off = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6) {
		int oh = digits(p + 1, 2), om = digits(p + 4, 2);
		if (oh < 0 || oh > 23 || p[3] != ':' || om < 0 || om > 59)
			return false;
		off = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
		p += 6;
	} else {
		return false;
	}
	if (*p)
		return false;
	int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se - off;
	if (t < TS_MIN || t > TS_MAX)
		return false;
	*secs = t;
	*nanos = ns;
	return true;
}

/* The proto3 JSON rendering: UTC, "Z", 0, 3, 6 or 9 fractional digits. */
size_t query_value_format_ts(int64_t secs, int32_t nanos, char out[40])
{
	int64_t days = secs >= 0 ? secs / 86400 : -((-secs + 86399) / 86400);
	int64_t rem = secs - days * 86400;
	int y, m, d;
	civil_from_days(days, &y, &m, &d);
	int n = snprintf(out, 40, "%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, (int)(rem / 3600),
			 (int)(rem / 60 % 60), (int)(rem % 60));
	if (nanos % 1000000 == 0 && nanos)
		n += snprintf(out + n, 40 - (size_t)n, ".%03d", nanos / 1000000);
	else if (nanos % 1000 == 0 && nanos)
		n += snprintf(out + n, 40 - (size_t)n, ".%06d", nanos / 1000);
	else if (nanos)
		n += snprintf(out + n, 40 - (size_t)n, ".%09d", nanos);
	out[n++] = 'Z';
	out[n] = '\0';
	return (size_t)n;
}

/* -?[0-9]{1,12}(.[0-9]{1,9})?s : protobuf Duration's JSON form. */
bool query_value_duration_ok(const char *s)
{
	const char *p = s + (*s == '-');
	int n = 0;
	while (is_digit(*p) && n < 13)
		p++, n++;
	if (n == 0 || n > 12)
		return false;
	if (*p == '.') {
		n = 0;
		for (p++; is_digit(*p) && n < 10; p++)
			n++;
		if (n == 0 || n > 9)
			return false;
	}
	return p[0] == 's' && p[1] == '\0';
}
