/*-------------------------------------------------------------------------
 *
 * unit_harness.h
 *	  The tiny harness of the standalone unit tests in test/unit: cases
 *	  that pass if none of their checks failed, and byte helpers.  Each
 *	  test program includes it once (everything here is static).
 *
 *-------------------------------------------------------------------------
 */
#ifndef UNIT_HARNESS_H
#define UNIT_HARNESS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int	cases_passed;
static int	cases_failed;
static int	case_ok;
static const char *case_name;

static void
begin_case(const char *name)
{
	case_name = name;
	case_ok = 1;
}

static void
end_case(void)
{
	if (case_ok)
		cases_passed++;
	else
		cases_failed++;
}

static int
check(int ok, const char *fmt,...)
{
	va_list		ap;

	if (ok)
		return 1;
	case_ok = 0;
	fprintf(stderr, "FAIL [%s]: ", case_name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 0;
}

/* The last line of a run, and the exit status. */
static int
report_cases(void)
{
	printf("%d passed, %d failed\n", cases_passed, cases_failed);
	return cases_failed == 0 ? 0 : 1;
}

typedef struct Bytes
{
	uint8_t    *data;
	size_t		len;
} Bytes;

static void
fatal(const char *what)
{
	fprintf(stderr, "fatal: %s\n", what);
	exit(2);
}

static int
bytes_equal(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
	return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

static inline int
hex_nibble(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

#endif							/* UNIT_HARNESS_H */
