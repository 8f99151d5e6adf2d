/*
 * fake_libbson.c
 *	  Test stand-in for DocumentDB's pg_documentdb_core.so, which exports its
 *	  own libbson globally: a PostgreSQL module exporting libbson-named
 *	  functions that misbehave.  Preloaded before bsoncrypt, it proves that
 *	  bsoncrypt never binds to another library's bson_* symbols.
 */
#include "postgres.h"
#include "fmgr.h"

#include <stdbool.h>
#include <stdint.h>

PG_MODULE_MAGIC;

extern bool bson_init_static(void *b, const uint8_t *data, size_t length);
extern bool bson_init_from_json(void *b, const char *data, long len, void *error);
extern bool bson_iter_init(void *iter, const void *bson);

bool
bson_init_static(void *b, const uint8_t *data, size_t length)
{
	elog(ERROR, "fake libbson: bson_init_static was bound to the wrong library");
	return false;
}

bool
bson_init_from_json(void *b, const char *data, long len, void *error)
{
	elog(ERROR, "fake libbson: bson_init_from_json was bound to the wrong library");
	return false;
}

bool
bson_iter_init(void *iter, const void *bson)
{
	elog(ERROR, "fake libbson: bson_iter_init was bound to the wrong library");
	return false;
}
