/*-------------------------------------------------------------------------
 *
 * key_vault.c
 *	  C support for the key vault's SQL functions (extension/parts/
 *	  10_key_vault.sql): making and wrapping new data keys, and converting
 *	  key vault rows to and from MongoDB key-vault documents.
 *
 *	  Exported documents carry exactly the fields libmongocrypt accepts, in
 *	  its order: _id, keyAltNames (when any), keyMaterial, creationDate,
 *	  updateDate, status, masterKey.  Imported documents are checked as
 *	  strictly as libmongocrypt checks them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "bsoncrypt.h"
#include "key_cache.h"
#include "kms.h"
#include "key_audit.h"

PG_FUNCTION_INFO_V1(bsoncrypt_new_key_material);
PG_FUNCTION_INFO_V1(bsoncrypt_find_master_key_version);
PG_FUNCTION_INFO_V1(bsoncrypt_key_document);
PG_FUNCTION_INFO_V1(bsoncrypt_parse_key_document);

/*
 * BSON dates are milliseconds since 1970.  A key vault row holds its dates
 * as timestamptz (microseconds since 2000, within MIN_TIMESTAMP and
 * END_TIMESTAMP), so the BSON dates it can hold are those between these
 * two, and every finite timestamptz has one (to the millisecond).
 */
#define PG_UNIX_EPOCH_DIFF_MSECS \
	((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000)
#define BSON_DATE_MIN (MIN_TIMESTAMP / 1000 + PG_UNIX_EPOCH_DIFF_MSECS)
#define BSON_DATE_MAX ((END_TIMESTAMP - 1) / 1000 + PG_UNIX_EPOCH_DIFF_MSECS)

/* The BSON date of a key's column; ERROR if it is not finite. */
static int64
timestamptz_to_bson_date(TimestampTz ts, const char *column, const pg_uuid_t *id)
{
	int64		msecs;

	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("cannot export data key %s: its %s is %s",
						uuid_to_cstring(id), column,
						TIMESTAMP_IS_NOBEGIN(ts) ? "-infinity" : "infinity"),
				 errhint("A key-vault document holds finite dates only; set %s to a finite time.",
						 column)));
	/* floor division, so dates before 2000 round the same way */
	msecs = ts >= 0 ? ts / 1000 : -((-ts + 999) / 1000);
	return msecs + PG_UNIX_EPOCH_DIFF_MSECS;
}

/* The timestamptz of a key document's date field; ERROR if out of range. */
static TimestampTz
bson_date_to_timestamptz(int64 msecs, const char *field, const pg_uuid_t *id)
{
	if (msecs < BSON_DATE_MIN || msecs > BSON_DATE_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_FIELD_OVERFLOW),
				 errmsg("%s of data key %s is out of range: " INT64_FORMAT " milliseconds since 1970",
						field, uuid_to_cstring(id), msecs),
				 errhint("The dates of a key-vault document must lie between 4714-11-24 00:00:00 BC and 294276-12-31 23:59:59.999 UTC, what timestamptz holds.")));
	return (msecs - PG_UNIX_EPOCH_DIFF_MSECS) * 1000;
}

/*
 * The full masterKey document of options given to create_data_key for
 * provider (NULL or {} when there are none: the provider's current
 * version), and the version it names.  Returns NULL when there are none.
 */
static BsonData *
master_key_from_options(const KmsProvider *provider, BsonData *options,
						char **version)
{
	bson_t		given;
	bson_t		full;
	bson_iter_t iter;
	const char *problem;
	BsonData   *result;

	*version = NULL;
	if (options == NULL)
		return NULL;
	bson_init_from_data(&given, options);
	bson_init(&full);
	bson_append_utf8(&full, "provider", 8, provider->name, -1);
	if (!bson_iter_init(&iter, &given))
		elog(ERROR, "invalid bson");
	while (bson_iter_next(&iter))
	{
		if (strcmp(bson_iter_key(&iter), "provider") == 0)
		{
			if (!BSON_ITER_HOLDS_UTF8(&iter) ||
				strcmp(bson_iter_utf8(&iter, NULL), provider->name) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("master_key names another provider than \"%s\"", provider->name)));
			continue;
		}
		bson_append_iter(&full, NULL, 0, &iter);
	}
	if (bson_count_keys(&full) == 1)
	{
		bson_destroy(&full);
		return NULL;
	}
	problem = kms_check_document(&full, version);
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid master_key for provider \"%s\": %s", provider->name, problem),
				 errhint("master_key holds the fields of MongoDB's masterKey for the provider, e.g. {\"keyId\": \"<id>\"} for \"kmip\", {\"keyName\": \"<name>\"} for \"customer\"; \"local\" and \"command\" take none.")));
	result = bson_data_from_bson(&full);
	bson_destroy(&full);
	return result;
}

/*
 * _new_key_material(provider, data_key bytea DEFAULT NULL,
 *					 master_key_options bson DEFAULT NULL)
 *	 -> (key_material bytea, master_key_version text, master_key bson)
 * Wraps the given 96-byte data key, or a fresh random one, with the
 * provider's current master key, or the one master_key_options names
 * (MongoDB's masterKey fields, e.g. {"keyId": "17"} for kmip).
 */
Datum
bsoncrypt_new_key_material(PG_FUNCTION_ARGS)
{
	/* not STRICT (data_key may be NULL): a NULL provider is refused here */
	const KmsProvider *provider =
		kms_get_provider(PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0)));
	uint8_t		dek[FLE_KEY_LEN];
	TupleDesc	desc;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	char	   *version;
	BsonData   *master_key;
	BsonData   *document;
	bytea	   *wrapped;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_new_key_material must return a record");
	master_key = master_key_from_options(provider,
										 PG_ARGISNULL(2) ? NULL : PG_GETARG_BSON_P(2),
										 &version);
	if (!PG_ARGISNULL(1))
	{
		bytea	   *given = PG_GETARG_BYTEA_PP(1);

		if (VARSIZE_ANY_EXHDR(given) != FLE_KEY_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key_material must be %d bytes, not %zu",
							FLE_KEY_LEN, (size_t) VARSIZE_ANY_EXHDR(given))));
		memcpy(dek, VARDATA_ANY(given), FLE_KEY_LEN);
	}
	else if (!fle_random_bytes(dek, sizeof(dek)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random data key")));

	PG_TRY();
	{
		wrapped = kms_wrap_secret(provider, version, master_key, dek, sizeof(dek),
								  &version, &document);
	}
	PG_FINALLY();
	{
		explicit_bzero(dek, sizeof(dek));
	}
	PG_END_TRY();

	key_audit_note_new_material(wrapped);
	values[0] = PointerGetDatum(wrapped);
	values[1] = CStringGetTextDatum(version);
	values[2] = PointerGetDatum(document);
	desc = BlessTupleDesc(desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

/*
 * _find_master_key_version(master_key bson, key_material bytea) -> text:
 * the version of the document's provider that unwraps this key material,
 * or NULL.
 */
Datum
bsoncrypt_find_master_key_version(PG_FUNCTION_ARGS)
{
	BsonData   *master_key = PG_GETARG_BSON_P(0);
	bytea	   *material = PG_GETARG_BYTEA_PP(1);
	char	   *version;

	version = kms_find_unwrapping_version(master_key,
										  (const uint8_t *) VARDATA_ANY(material),
										  VARSIZE_ANY_EXHDR(material));
	if (version == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(version));
}

/*
 * A column of a key vault row.  _key_document() also takes rows built with
 * ROW(...)::bsoncrypt.key_vault, which no constraint of the table checks:
 * a NULL is refused.
 */
static Datum
row_attr(HeapTupleHeader row, const char *name)
{
	bool		isnull;
	Datum		value = GetAttributeByName(row, name, &isnull);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("cannot make a key document of a key vault row whose %s is NULL", name)));
	return value;
}

static void
append_alt_names(bson_t *doc, Datum names_datum)
{
	ArrayType  *names = DatumGetArrayTypeP(names_datum);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	bson_t		array;

	deconstruct_array(names, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		return;
	bson_append_array_begin(doc, "keyAltNames", -1, &array);
	for (int i = 0; i < n; i++)
	{
		char		index[16];
		text	   *name;

		if (nulls[i])
			continue;
		name = DatumGetTextPP(elems[i]);
		snprintf(index, sizeof(index), "%d", i);
		bson_append_utf8(&array, index, -1, VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	}
	bson_append_array_end(doc, &array);
}

/* _key_document(k key_vault) -> bson: the MongoDB key-vault document */
Datum
bsoncrypt_key_document(PG_FUNCTION_ARGS)
{
	HeapTupleHeader row = PG_GETARG_HEAPTUPLEHEADER(0);
	pg_uuid_t  *id = DatumGetUUIDP(row_attr(row, "_id"));
	Datum		alt_names = row_attr(row, "key_alt_names");
	bytea	   *material = DatumGetByteaPP(row_attr(row, "key_material"));
	BsonData   *master_key = DatumGetBsonP(row_attr(row, "master_key"));
	TimestampTz created = DatumGetTimestampTz(row_attr(row, "creation_date"));
	TimestampTz updated = DatumGetTimestampTz(row_attr(row, "update_date"));
	int32		status = DatumGetInt32(row_attr(row, "status"));
	bson_t		doc;
	bson_t		master;
	BsonData   *result;

	bson_init(&doc);
	bson_append_binary(&doc, "_id", 3, BSON_SUBTYPE_UUID, id->data, UUID_LEN);
	append_alt_names(&doc, alt_names);
	bson_append_binary(&doc, "keyMaterial", 11, BSON_SUBTYPE_BINARY,
					   (const uint8_t *) VARDATA_ANY(material), VARSIZE_ANY_EXHDR(material));
	bson_append_date_time(&doc, "creationDate", 12,
						  timestamptz_to_bson_date(created, "creation_date", id));
	bson_append_date_time(&doc, "updateDate", 10,
						  timestamptz_to_bson_date(updated, "update_date", id));
	bson_append_int32(&doc, "status", 6, status);
	bson_init_from_data(&master, master_key);
	bson_append_document(&doc, "masterKey", 9, &master);
	result = bson_data_from_bson(&doc);
	bson_destroy(&doc);
	PG_RETURN_BSON_P(result);
}

static void
refuse_key_document(const char *problem)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid key-vault document: %s", problem),
			 errhint("A key-vault document has _id (UUID), keyMaterial (binary), creationDate, updateDate, status, masterKey and optionally keyAltNames, as MongoDB drivers write them.")));
}

static void
check_master_key(const bson_iter_t *iter)
{
	bson_t		master;
	uint32_t	len;
	const uint8_t *bytes;
	char	   *version;
	const char *problem;

	if (!BSON_ITER_HOLDS_DOCUMENT(iter))
		refuse_key_document("masterKey must be a document");
	bson_iter_document(iter, &len, &bytes);
	if (!bson_init_static(&master, bytes, len))
		refuse_key_document("masterKey must be a document");
	problem = kms_check_document(&master, &version);
	if (problem != NULL)
		refuse_key_document(problem);
}

static Datum
parse_alt_names(const bson_iter_t *iter)
{
	bson_iter_t child;
	List	   *names = NIL;
	ListCell   *lc;
	Datum	   *elems;
	int			i = 0;

	if (!BSON_ITER_HOLDS_ARRAY(iter) || !bson_iter_recurse(iter, &child))
		refuse_key_document("keyAltNames must be an array");
	while (bson_iter_next(&child))
	{
		uint32_t	len;
		const char *name;

		if (!BSON_ITER_HOLDS_UTF8(&child))
			refuse_key_document("keyAltNames must hold only strings");
		name = bson_iter_utf8(&child, &len);
		foreach(lc, names)
			if (strcmp((char *) lfirst(lc), name) == 0)
				refuse_key_document(psprintf("keyAltNames holds \"%s\" twice", name));
		names = lappend(names, pnstrdup(name, len));
	}
	elems = palloc(sizeof(Datum) * Max(list_length(names), 1));
	foreach(lc, names)
		elems[i++] = CStringGetTextDatum((char *) lfirst(lc));
	return PointerGetDatum(construct_array(elems, i, TEXTOID, -1, false, TYPALIGN_INT));
}

static int32
parse_status(const bson_iter_t *iter)
{
	if (BSON_ITER_HOLDS_INT32(iter))
		return bson_iter_int32(iter);
	if (BSON_ITER_HOLDS_INT64(iter) && bson_iter_int64(iter) == (int32) bson_iter_int64(iter))
		return (int32) bson_iter_int64(iter);
	if (BSON_ITER_HOLDS_DOUBLE(iter) && bson_iter_double(iter) == (int32) bson_iter_double(iter))
		return (int32) bson_iter_double(iter);
	refuse_key_document("status must be an integer");
	return 0;
}

/* Field positions in _parse_key_document's result */
enum
{
	KD_ID, KD_ALT_NAMES, KD_MATERIAL, KD_MASTER_KEY, KD_CREATED, KD_UPDATED, KD_STATUS, KD_NFIELDS
};

/*
 * One field of a key document into values (dates into msecs, converted
 * once the _id is known, so that errors can name the key).
 */
static void
parse_key_field(const bson_iter_t *iter, Datum *values, bool *seen, int64 *msecs)
{
	const char *field = bson_iter_key(iter);
	bson_subtype_t subtype;
	uint32_t	len;
	const uint8_t *bytes;

	if (strcmp(field, "_id") == 0)
	{
		pg_uuid_t  *id = palloc(sizeof(pg_uuid_t));

		if (!BSON_ITER_HOLDS_BINARY(iter))
			refuse_key_document("_id must be a UUID (binary subtype 4)");
		bson_iter_binary(iter, &subtype, &len, &bytes);
		if (subtype != BSON_SUBTYPE_UUID || len != UUID_LEN)
			refuse_key_document("_id must be a UUID (binary subtype 4)");
		memcpy(id->data, bytes, UUID_LEN);
		values[KD_ID] = UUIDPGetDatum(id);
		seen[KD_ID] = true;
	}
	else if (strcmp(field, "keyAltNames") == 0)
	{
		values[KD_ALT_NAMES] = parse_alt_names(iter);
		seen[KD_ALT_NAMES] = true;
	}
	else if (strcmp(field, "keyMaterial") == 0)
	{
		bytea	   *material;

		if (!BSON_ITER_HOLDS_BINARY(iter))
			refuse_key_document("keyMaterial must be binary subtype 0");
		bson_iter_binary(iter, &subtype, &len, &bytes);
		if (subtype != BSON_SUBTYPE_BINARY)
			refuse_key_document("keyMaterial must be binary subtype 0");
		material = palloc(VARHDRSZ + len);
		SET_VARSIZE(material, VARHDRSZ + len);
		memcpy(VARDATA(material), bytes, len);
		values[KD_MATERIAL] = PointerGetDatum(material);
		seen[KD_MATERIAL] = true;
	}
	else if (strcmp(field, "masterKey") == 0)
	{
		BsonData   *master;

		check_master_key(iter);
		bson_iter_document(iter, &len, &bytes);
		master = palloc(VARHDRSZ + len);
		SET_VARSIZE(master, VARHDRSZ + len);
		memcpy(VARDATA(master), bytes, len);
		values[KD_MASTER_KEY] = PointerGetDatum(master);
		seen[KD_MASTER_KEY] = true;
	}
	else if (strcmp(field, "creationDate") == 0 || strcmp(field, "updateDate") == 0)
	{
		int			which = field[0] == 'c' ? KD_CREATED : KD_UPDATED;

		if (!BSON_ITER_HOLDS_DATE_TIME(iter))
			refuse_key_document(psprintf("%s must be a date", field));
		msecs[which] = bson_iter_date_time(iter);
		seen[which] = true;
	}
	else if (strcmp(field, "status") == 0)
	{
		values[KD_STATUS] = Int32GetDatum(parse_status(iter));
		seen[KD_STATUS] = true;
	}
	else
		refuse_key_document(psprintf("unrecognized field \"%s\"", field));
}

/*
 * _parse_key_document(doc bson) -> (_id, key_alt_names, key_material,
 * master_key, creation_date, update_date, status).
 */
Datum
bsoncrypt_parse_key_document(PG_FUNCTION_ARGS)
{
	BsonData   *data = PG_GETARG_BSON_P(0);
	bson_t		doc;
	bson_iter_t iter;
	TupleDesc	desc;
	Datum		values[KD_NFIELDS];
	bool		nulls[KD_NFIELDS];
	bool		seen[KD_NFIELDS] = {false};
	int64		msecs[KD_NFIELDS] = {0};
	static const char *const required[KD_NFIELDS] = {
		"_id", NULL, "keyMaterial", "masterKey", "creationDate", "updateDate", "status"
	};

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "_parse_key_document must return a record");
	bson_init_from_data(&doc, data);
	if (!bson_iter_init(&iter, &doc))
		refuse_key_document("not a document");
	while (bson_iter_next(&iter))
		parse_key_field(&iter, values, seen, msecs);
	for (int i = 0; i < KD_NFIELDS; i++)
	{
		if (!seen[i] && required[i] != NULL)
			refuse_key_document(psprintf("no \"%s\" field", required[i]));
		nulls[i] = false;
	}
	values[KD_CREATED] = TimestampTzGetDatum(bson_date_to_timestamptz(msecs[KD_CREATED], "creationDate",
																	  DatumGetUUIDP(values[KD_ID])));
	values[KD_UPDATED] = TimestampTzGetDatum(bson_date_to_timestamptz(msecs[KD_UPDATED], "updateDate",
																	  DatumGetUUIDP(values[KD_ID])));
	if (!seen[KD_ALT_NAMES])
		values[KD_ALT_NAMES] = PointerGetDatum(construct_empty_array(TEXTOID));
	desc = BlessTupleDesc(desc);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
