/*-------------------------------------------------------------------------
 *
 * pg_glue.h
 *	  Between the bench/fuzz harnesses (no PostgreSQL headers) and
 *	  pg_glue.c (PostgreSQL headers): bsoncrypt's Extended JSON writer.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BENCH_FUZZ_PG_GLUE_H
#define BENCH_FUZZ_PG_GLUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* bsoncrypt's text output of a valid document (src/bson_ejson.c); malloc'd */
extern char *fuzz_bsoncrypt_json(const uint8_t *data, size_t len, bool canonical);

/* called when that writer raises an ERROR; does not return */
extern void fuzz_glue_error(const char *message) __attribute__((noreturn));

#endif							/* BENCH_FUZZ_PG_GLUE_H */
