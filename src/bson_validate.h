/*-------------------------------------------------------------------------
 *
 * bson_validate.h
 *	  Structural validation of raw BSON, free of PostgreSQL headers so that
 *	  it can be fuzzed and unit-tested alone.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSON_VALIDATE_H
#define BSON_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Deepest nesting of documents/arrays accepted (MongoDB's own limit). */
#define BSON_MAX_NESTING_DEPTH	100

/* Largest document accepted (MongoDB's 16 MiB limit). */
#define BSON_MAX_DOCUMENT_SIZE	(16 * 1024 * 1024)

/* Longest field path kept for messages; longer paths keep their tail. */
#define BSON_VALIDATE_PATH_MAX	160

typedef struct BsonValidationError
{
	size_t		offset;			/* byte offset of the problem */
	char		message[96];	/* what is wrong */
	char		path[BSON_VALIDATE_PATH_MAX + 4];	/* dotted field path, or "" */
} BsonValidationError;

/*
 * Check that data[0..len) is exactly one well-formed BSON document: length
 * prefix equal to len, terminated, every element in bounds and of a known
 * type, valid UTF-8 in field names and strings, nesting within the limit.
 * Returns false and fills *err otherwise.  Never recurses deeper than
 * BSON_MAX_NESTING_DEPTH.
 */
extern bool bson_validate_document(const uint8_t *data, size_t len,
								   BsonValidationError *err);

#endif							/* BSON_VALIDATE_H */
