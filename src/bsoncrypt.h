/*-------------------------------------------------------------------------
 *
 * bsoncrypt.h
 *	  Declarations shared by the bsoncrypt extension's C files: the bson
 *	  datum type, BSON validation and path lookup, and settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_H
#define BSONCRYPT_H

#include "postgres.h"
#include "fmgr.h"
#include "lib/stringinfo.h"

#include <bson/bson.h>

#include "bson_validate.h"

/* A bsoncrypt.bson datum is a plain varlena holding raw BSON bytes. */
typedef struct varlena BsonData;

/* packed: bson is read with VARDATA_ANY and needs no alignment */
#define DatumGetBsonP(d)		((BsonData *) PG_DETOAST_DATUM_PACKED(d))
#define PG_GETARG_BSON_P(n)		DatumGetBsonP(PG_GETARG_DATUM(n))
#define PG_RETURN_BSON_P(x)		PG_RETURN_POINTER(x)
#define BsonDataPtr(b)			((const uint8_t *) VARDATA_ANY(b))
#define BsonDataLen(b)			((uint32_t) VARSIZE_ANY_EXHDR(b))

/* libbson's JSON parser stops at this depth (its parser stack) */
#define BSON_MAX_JSON_NESTING_DEPTH 98


/* settings (bsoncrypt.c) */
typedef enum BsonOutputMode
{
	BSON_OUTPUT_RELAXED,
	BSON_OUTPUT_CANONICAL
} BsonOutputMode;

extern int	bsoncrypt_bson_output;

/* bson_type.c */
extern void bson_validate_bytes(const uint8_t *data, size_t len,
								const char *context);
extern BsonData *bson_data_from_bson(const bson_t *b);
extern void bson_init_from_data(bson_t *b, const BsonData *data);
extern BsonData *bson_data_from_json(const char *json, size_t len);
extern const char *bson_type_name(bson_type_t type);

/* bson_ejson.c */
extern char *bson_data_to_json(const BsonData *data, BsonOutputMode mode);
extern char *bson_value_to_json(const bson_iter_t *value, BsonOutputMode mode);

/* bson_path.c */

/* An element found by path, with the documents enclosing it. */
typedef struct BsonPathMatch
{
	bson_iter_t elem;
	int			ndocs;
	uint32_t	doc_offsets[BSON_MAX_NESTING_DEPTH + 1];	/* outermost first */
} BsonPathMatch;

extern bool bson_find_path_with_parents(const bson_t *doc, const char *path,
										BsonPathMatch *m);
extern bool bson_find_path(const bson_t *doc, const char *path,
						   bson_iter_t *found);
extern BsonData *bson_wrap_value(const bson_iter_t *value);
extern text *bson_value_as_text(const bson_iter_t *value);

/* bsoncrypt.c */
extern bool bsoncrypt_start_database_worker(const char *function, const char *type,
											Oid dboid, pid_t notify_pid);

#endif							/* BSONCRYPT_H */
