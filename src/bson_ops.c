/*-------------------------------------------------------------------------
 *
 * bson_ops.c
 *	  Comparison and hashing of bson values, backing the btree and hash
 *	  operator classes.
 *
 *	  The order is the byte order of the raw BSON (memcmp, then shorter
 *	  first).  It is total and stable across versions and platforms, and it
 *	  makes equality mean "the same bytes", which is what deterministic
 *	  encryption needs for indexed lookups.  It is not MongoDB's
 *	  cross-type sort order.
 *
 *-------------------------------------------------------------------------
 */
#include "bsoncrypt.h"

#include "common/hashfn.h"

PG_FUNCTION_INFO_V1(bsoncrypt_bson_cmp);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_eq);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_ne);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_lt);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_le);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_gt);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_ge);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_hash);
PG_FUNCTION_INFO_V1(bsoncrypt_bson_hash_extended);

static int
bson_compare_bytes(const BsonData *a, const BsonData *b)
{
	uint32_t	alen = BsonDataLen(a);
	uint32_t	blen = BsonDataLen(b);
	int			cmp = memcmp(BsonDataPtr(a), BsonDataPtr(b), Min(alen, blen));

	if (cmp != 0)
		return cmp < 0 ? -1 : 1;
	if (alen != blen)
		return alen < blen ? -1 : 1;
	return 0;
}

static int
compare_args(FunctionCallInfo fcinfo)
{
	BsonData   *a = PG_GETARG_BSON_P(0);
	BsonData   *b = PG_GETARG_BSON_P(1);
	int			result = bson_compare_bytes(a, b);

	PG_FREE_IF_COPY(a, 0);
	PG_FREE_IF_COPY(b, 1);
	return result;
}

Datum
bsoncrypt_bson_cmp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(compare_args(fcinfo));
}

Datum
bsoncrypt_bson_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) == 0);
}

Datum
bsoncrypt_bson_ne(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) != 0);
}

Datum
bsoncrypt_bson_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) < 0);
}

Datum
bsoncrypt_bson_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) <= 0);
}

Datum
bsoncrypt_bson_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) > 0);
}

Datum
bsoncrypt_bson_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) >= 0);
}

Datum
bsoncrypt_bson_hash(PG_FUNCTION_ARGS)
{
	BsonData   *a = PG_GETARG_BSON_P(0);
	Datum		result = hash_any(BsonDataPtr(a), BsonDataLen(a));

	PG_FREE_IF_COPY(a, 0);
	PG_RETURN_DATUM(result);
}

Datum
bsoncrypt_bson_hash_extended(PG_FUNCTION_ARGS)
{
	BsonData   *a = PG_GETARG_BSON_P(0);
	Datum		result = hash_any_extended(BsonDataPtr(a), BsonDataLen(a),
										   PG_GETARG_INT64(1));

	PG_FREE_IF_COPY(a, 0);
	PG_RETURN_DATUM(result);
}
