/*-------------------------------------------------------------------------
 *
 * trusted_sql.h
 *	  How bsoncrypt's C code finds its own SQL objects and runs SQL without
 *	  trusting names that other roles control (trusted_sql.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_TRUSTED_SQL_H
#define BSONCRYPT_TRUSTED_SQL_H

#include "postgres.h"

#include "executor/spi.h"

/* the search_path every statement bsoncrypt runs through SPI is parsed under */
#define BSONCRYPT_PINNED_SEARCH_PATH "pg_catalog, pg_temp"

extern Oid	bsoncrypt_extension_oid(void);
extern Oid	bsoncrypt_schema_oid(bool missing_ok);
extern Oid	bsoncrypt_relation_oid(const char *name, bool missing_ok);
extern bool bsoncrypt_is_own_relation(Oid relid, const char *name);

extern int	bsoncrypt_spi_execute(const char *sql, int nargs, Oid *argtypes,
								  Datum *values, const char *nulls,
								  bool read_only, long tcount);
extern Portal bsoncrypt_spi_cursor_open(const char *sql, int nargs,
										Oid *argtypes, Datum *values,
										const char *nulls, bool read_only);
extern SPIPlanPtr bsoncrypt_spi_prepare(const char *sql, int nargs,
										Oid *argtypes);

#endif							/* BSONCRYPT_TRUSTED_SQL_H */
