/*-------------------------------------------------------------------------
 *
 * kms_customer.c
 *	  The "customer" master-key provider: master keys that the client
 *	  supplies for one transaction (bsoncrypt.supply_customer_key) and the
 *	  server never keeps (customer_keys.c), like S3's SSE-C.
 *
 *	  A customer key is 96 bytes, used as the key-encryption key of
 *	  MongoDB's "local" format, and named by the client.  Its version is its
 *	  name.  The masterKey document of a data key it wraps is
 *	  {provider: "customer", keyName: "<name>", keyCheck: BinData(0, 16
 *	  bytes)}, keyCheck being HMAC-SHA-256(key, label)[0:16]: unwrapping
 *	  with another key supplied under the same name is reported as a wrong
 *	  key (28000) before any decryption is tried.
 *
 *	  There is no current version: a key to wrap with is always named (the
 *	  masterKey option keyName, or rewrap_many_data_key's version).  Only a
 *	  client's own backend has customer keys: background workers (the
 *	  rotation worker) and parallel workers are refused.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"

#include "customer_keys.h"
#include "kms.h"

typedef struct CustomerRef
{
	char	   *name;
	bool		has_check;
	uint8_t		check[CUSTOMER_KEY_CHECK_LEN];
} CustomerRef;

static const char *
parse_document(const bson_t *doc, CustomerRef *ref)
{
	bson_iter_t iter;

	memset(ref, 0, sizeof(*ref));
	if (!bson_iter_init(&iter, doc))
		return "masterKey must be a document";
	while (bson_iter_next(&iter))
	{
		const char *field = bson_iter_key(&iter);

		if (strcmp(field, "provider") == 0)
			continue;
		if (strcmp(field, "keyName") == 0)
		{
			if (!BSON_ITER_HOLDS_UTF8(&iter))
				return "masterKey.keyName must be a string";
			ref->name = pstrdup(bson_iter_utf8(&iter, NULL));
			if (!kms_valid_version_name(ref->name))
				return psprintf("masterKey.keyName \"%s\" is not a valid key name", ref->name);
		}
		else if (strcmp(field, "keyCheck") == 0)
		{
			bson_subtype_t subtype;
			uint32_t	len;
			const uint8_t *data;

			if (!BSON_ITER_HOLDS_BINARY(&iter))
				return "masterKey.keyCheck must be binary data";
			bson_iter_binary(&iter, &subtype, &len, &data);
			if (subtype != BSON_SUBTYPE_BINARY || len != CUSTOMER_KEY_CHECK_LEN)
				return psprintf("masterKey.keyCheck must be %d bytes of binary subtype 0",
								CUSTOMER_KEY_CHECK_LEN);
			memcpy(ref->check, data, CUSTOMER_KEY_CHECK_LEN);
			ref->has_check = true;
		}
		else
			return psprintf("unexpected field \"%s\" in masterKey", field);
	}
	if (ref->name == NULL)
		return "masterKey.keyName is required for provider \"customer\"";
	return NULL;
}

static char *
customer_document_version(const bson_t *master_key, const char **problem)
{
	CustomerRef ref;

	*problem = parse_document(master_key, &ref);
	return *problem ? NULL : ref.name;
}

static BsonData *
make_document(const char *name, const uint8_t check[CUSTOMER_KEY_CHECK_LEN])
{
	bson_t		doc;
	BsonData   *result;

	bson_init(&doc);
	bson_append_utf8(&doc, "provider", 8, CUSTOMER_PROVIDER_NAME, -1);
	bson_append_utf8(&doc, "keyName", 7, name, -1);
	bson_append_binary(&doc, "keyCheck", 8, BSON_SUBTYPE_BINARY, check, CUSTOMER_KEY_CHECK_LEN);
	result = bson_data_from_bson(&doc);
	bson_destroy(&doc);
	return result;
}

static void
refuse_no_current_key(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("the customer provider has no current master key"),
			 errhint("Name the customer key: create_data_key('customer', ..., master_key => '{\"keyName\": \"<name>\"}'), or rewrap_many_data_key(filter, 'customer', '<name>').")));
}

static void
customer_open(const char *version, const BsonData *master_key, KmsOpened *opened)
{
	CustomerRef ref;
	const char *name = version;
	uint8_t		check[CUSTOMER_KEY_CHECK_LEN];

	memset(&ref, 0, sizeof(ref));
	if (master_key != NULL)
	{
		bson_t		doc;
		const char *problem;

		bson_init_from_data(&doc, master_key);
		problem = parse_document(&doc, &ref);
		if (problem != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid masterKey of provider \"customer\": %s", problem)));
		if (name == NULL)
			name = ref.name;
		else if (strcmp(name, ref.name) != 0)
			ref.has_check = false;	/* another key than the document's */
	}
	if (!customer_key_usable_here())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("customer keys are not available to %s",
						IsBackgroundWorker ? "background workers" : "this process"),
				 errdetail("Only the client's own session has the customer keys it supplied; the rotation worker and parallel workers never do."),
				 errhint("Rewrap keys of the customer provider with bsoncrypt.rewrap_many_data_key in a session that supplies the keys.")));
	if (name == NULL)
		refuse_no_current_key();
	if (!customer_key_copy(name, opened->key))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("customer key \"%s\" is not supplied in this transaction", name),
				 errhint("Supply it first, in the same transaction: SELECT bsoncrypt.supply_customer_key('%s', $1) with the key as a bind parameter.",
						 name)));
	customer_key_check_value(opened->key, check);
	if (ref.has_check && memcmp(check, ref.check, CUSTOMER_KEY_CHECK_LEN) != 0)
	{
		explicit_bzero(opened->key, sizeof(opened->key));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("the key supplied as customer key \"%s\" is not the one that wrapped this key", name),
				 errdetail("Its key check value differs from masterKey.keyCheck."),
				 errhint("Supply the key that was supplied as \"%s\" when the data key was created or last rewrapped.",
						 name)));
	}
	opened->handed_out = true;
	opened->version = pstrdup(name);
	opened->document = make_document(name, check);
}

static char *
customer_current_version(void)
{
	refuse_no_current_key();
	return NULL;				/* keep the compiler quiet */
}

static List *
customer_list_versions(void)
{
	return customer_key_names();
}

const KmsProvider kms_customer_provider = {
	.name = CUSTOMER_PROVIDER_NAME,
	.open = customer_open,
	.current_version = customer_current_version,
	.list_versions = customer_list_versions,
	.document_version = customer_document_version,
};
