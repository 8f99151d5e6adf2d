/*-------------------------------------------------------------------------
 *
 * kmip_ttlv.c
 *	  KMIP 1.x TTLV: writing the requests bsoncrypt sends, and checking and
 *	  reading the responses of a KMIP server.
 *
 * This file owns the bytes of every KMIP message bsoncrypt sends or reads.
 * It is plain C99 with no PostgreSQL, libbson or OpenSSL header and does
 * not allocate memory; see kmip_ttlv.h for the contracts.  The network
 * side (TLS, timeouts) is kmip_client.c.
 *
 * A response is first walked as a whole (kmip_check_items): every item of
 * every structure must fit in its parent, have a known type, the fixed
 * length of its type when it has one, and zero padding; structures may
 * nest KMIP_MAX_DEPTH deep.  Only then are the fields bsoncrypt needs
 * looked up, by path, in the checked bytes.
 *
 *-------------------------------------------------------------------------
 */
#include "kmip_ttlv.h"

#include <string.h>

/* ----------------------------------------------------------------
 *		Writing
 * ----------------------------------------------------------------
 */

static size_t
padded_len(size_t len)
{
	return (len + 7) & ~(size_t) 7;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t) (v >> 24);
	p[1] = (uint8_t) (v >> 16);
	p[2] = (uint8_t) (v >> 8);
	p[3] = (uint8_t) v;
}

static uint32_t
get_u32(const uint8_t *p)
{
	return ((uint32_t) p[0] << 24) | ((uint32_t) p[1] << 16) |
		((uint32_t) p[2] << 8) | (uint32_t) p[3];
}

void
kmip_writer_init(KmipWriter *w, uint8_t *buf, size_t cap)
{
	memset(w, 0, sizeof(*w));
	w->buf = buf;
	w->cap = cap;
	w->failed = (buf == NULL);
}

/* Append an item header and value (padded); the value may be NULL (zeros). */
static void
write_item(KmipWriter *w, uint32_t tag, uint8_t type,
		   const uint8_t *value, size_t len)
{
	size_t		total;

	if (w->failed)
		return;
	if (len > 0x7fffffff || w->cap - w->len < KMIP_HEADER_LEN ||
		w->cap - w->len - KMIP_HEADER_LEN < padded_len(len))
	{
		w->failed = true;
		return;
	}
	total = KMIP_HEADER_LEN + padded_len(len);
	w->buf[w->len] = (uint8_t) (tag >> 16);
	w->buf[w->len + 1] = (uint8_t) (tag >> 8);
	w->buf[w->len + 2] = (uint8_t) tag;
	w->buf[w->len + 3] = type;
	put_u32(w->buf + w->len + 4, (uint32_t) len);
	memset(w->buf + w->len + KMIP_HEADER_LEN, 0, padded_len(len));
	if (value != NULL && len > 0)
		memcpy(w->buf + w->len + KMIP_HEADER_LEN, value, len);
	w->len += total;
}

void
kmip_begin_struct(KmipWriter *w, uint32_t tag)
{
	if (w->failed)
		return;
	if (w->depth == KMIP_MAX_DEPTH)
	{
		w->failed = true;
		return;
	}
	w->open[w->depth] = w->len;
	write_item(w, tag, KMIP_TYPE_STRUCTURE, NULL, 0);
	if (!w->failed)
		w->depth++;
}

void
kmip_end_struct(KmipWriter *w)
{
	size_t		start;

	if (w->failed)
		return;
	if (w->depth == 0)
	{
		w->failed = true;
		return;
	}
	start = w->open[--w->depth];
	put_u32(w->buf + start + 4, (uint32_t) (w->len - start - KMIP_HEADER_LEN));
}

void
kmip_write_integer(KmipWriter *w, uint32_t tag, int32_t value)
{
	uint8_t		v[4];

	put_u32(v, (uint32_t) value);
	write_item(w, tag, KMIP_TYPE_INTEGER, v, sizeof(v));
}

void
kmip_write_enum(KmipWriter *w, uint32_t tag, uint32_t value)
{
	uint8_t		v[4];

	put_u32(v, value);
	write_item(w, tag, KMIP_TYPE_ENUMERATION, v, sizeof(v));
}

void
kmip_write_bool(KmipWriter *w, uint32_t tag, bool value)
{
	uint8_t		v[8] = {0};

	v[7] = value ? 1 : 0;
	write_item(w, tag, KMIP_TYPE_BOOLEAN, v, sizeof(v));
}

void
kmip_write_text(KmipWriter *w, uint32_t tag, const char *text, size_t len)
{
	write_item(w, tag, KMIP_TYPE_TEXT_STRING, (const uint8_t *) text, len);
}

void
kmip_write_bytes(KmipWriter *w, uint32_t tag, const uint8_t *data, size_t len)
{
	write_item(w, tag, KMIP_TYPE_BYTE_STRING, data, len);
}

size_t
kmip_writer_finish(KmipWriter *w)
{
	if (w->failed || w->depth != 0)
		return 0;
	return w->len;
}

/* ----------------------------------------------------------------
 *		Requests
 * ----------------------------------------------------------------
 */

/* RequestMessage, RequestHeader, BatchItem with its Operation, RequestPayload */
static void
begin_request(KmipWriter *w, int minor, uint32_t operation)
{
	kmip_begin_struct(w, KMIP_TAG_REQUEST_MESSAGE);
	kmip_begin_struct(w, KMIP_TAG_REQUEST_HEADER);
	kmip_begin_struct(w, KMIP_TAG_PROTOCOL_VERSION);
	kmip_write_integer(w, KMIP_TAG_PROTOCOL_VERSION_MAJOR, 1);
	kmip_write_integer(w, KMIP_TAG_PROTOCOL_VERSION_MINOR, minor);
	kmip_end_struct(w);
	kmip_write_integer(w, KMIP_TAG_BATCH_COUNT, 1);
	kmip_end_struct(w);
	kmip_begin_struct(w, KMIP_TAG_BATCH_ITEM);
	kmip_write_enum(w, KMIP_TAG_OPERATION, operation);
	kmip_begin_struct(w, KMIP_TAG_REQUEST_PAYLOAD);
}

/* close RequestPayload, BatchItem, RequestMessage */
static size_t
end_request(KmipWriter *w)
{
	kmip_end_struct(w);
	kmip_end_struct(w);
	kmip_end_struct(w);
	return kmip_writer_finish(w);
}

static bool
valid_id(const char *id)
{
	size_t		len;

	if (id == NULL)
		return false;
	len = strlen(id);
	return len > 0 && len <= KMIP_MAX_ID_LEN;
}

static void
write_id(KmipWriter *w, const char *id)
{
	kmip_write_text(w, KMIP_TAG_UNIQUE_IDENTIFIER, id, strlen(id));
}

static void
begin_attribute(KmipWriter *w, const char *name)
{
	kmip_begin_struct(w, KMIP_TAG_ATTRIBUTE);
	kmip_write_text(w, KMIP_TAG_ATTRIBUTE_NAME, name, strlen(name));
}

static void
write_int_attribute(KmipWriter *w, const char *name, int32_t value)
{
	begin_attribute(w, name);
	kmip_write_integer(w, KMIP_TAG_ATTRIBUTE_VALUE, value);
	kmip_end_struct(w);
}

/* Name attribute: NameValue, NameType 1 (Uninterpreted Text String) */
static void
write_name_attribute(KmipWriter *w, const char *name)
{
	begin_attribute(w, "Name");
	kmip_begin_struct(w, KMIP_TAG_ATTRIBUTE_VALUE);
	kmip_write_text(w, KMIP_TAG_NAME_VALUE, name, strlen(name));
	kmip_write_enum(w, KMIP_TAG_NAME_TYPE, 1);
	kmip_end_struct(w);
	kmip_end_struct(w);
}

size_t
kmip_request_register_secret(uint8_t *buf, size_t cap,
							 const uint8_t *secret, size_t secret_len,
							 const char *name)
{
	KmipWriter	w;

	if (secret == NULL || secret_len == 0 ||
		(name != NULL && !valid_id(name)))
		return 0;
	kmip_writer_init(&w, buf, cap);
	begin_request(&w, 0, KMIP_OP_REGISTER);
	kmip_write_enum(&w, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SECRET_DATA);
	kmip_begin_struct(&w, KMIP_TAG_TEMPLATE_ATTRIBUTE);
	/* the secret is not used by the server's own cryptography */
	write_int_attribute(&w, "Cryptographic Usage Mask", 0);
	if (name != NULL)
		write_name_attribute(&w, name);
	kmip_end_struct(&w);
	kmip_begin_struct(&w, KMIP_TAG_SECRET_DATA);
	kmip_write_enum(&w, KMIP_TAG_SECRET_DATA_TYPE, 0x02);	/* Seed */
	kmip_begin_struct(&w, KMIP_TAG_KEY_BLOCK);
	kmip_write_enum(&w, KMIP_TAG_KEY_FORMAT_TYPE, KMIP_FORMAT_OPAQUE);
	kmip_begin_struct(&w, KMIP_TAG_KEY_VALUE);
	kmip_write_bytes(&w, KMIP_TAG_KEY_MATERIAL, secret, secret_len);
	kmip_end_struct(&w);
	kmip_end_struct(&w);
	kmip_end_struct(&w);
	return end_request(&w);
}

size_t
kmip_request_create_aes256(uint8_t *buf, size_t cap, const char *name)
{
	KmipWriter	w;

	if (name != NULL && !valid_id(name))
		return 0;
	kmip_writer_init(&w, buf, cap);
	begin_request(&w, 2, KMIP_OP_CREATE);
	kmip_write_enum(&w, KMIP_TAG_OBJECT_TYPE, KMIP_OBJECT_SYMMETRIC_KEY);
	kmip_begin_struct(&w, KMIP_TAG_TEMPLATE_ATTRIBUTE);
	begin_attribute(&w, "Cryptographic Algorithm");
	kmip_write_enum(&w, KMIP_TAG_ATTRIBUTE_VALUE, 0x03);	/* AES */
	kmip_end_struct(&w);
	write_int_attribute(&w, "Cryptographic Length", 256);
	write_int_attribute(&w, "Cryptographic Usage Mask", 0x04 | 0x08);	/* Encrypt, Decrypt */
	if (name != NULL)
		write_name_attribute(&w, name);
	kmip_end_struct(&w);
	return end_request(&w);
}

/* a request whose payload is only the unique identifier */
static size_t
id_request(uint8_t *buf, size_t cap, uint32_t operation, const char *id)
{
	KmipWriter	w;

	if (!valid_id(id))
		return 0;
	kmip_writer_init(&w, buf, cap);
	begin_request(&w, 0, operation);
	write_id(&w, id);
	return end_request(&w);
}

size_t
kmip_request_activate(uint8_t *buf, size_t cap, const char *id)
{
	return id_request(buf, cap, KMIP_OP_ACTIVATE, id);
}

size_t
kmip_request_get(uint8_t *buf, size_t cap, const char *id)
{
	return id_request(buf, cap, KMIP_OP_GET, id);
}

size_t
kmip_request_get_object_type(uint8_t *buf, size_t cap, const char *id)
{
	KmipWriter	w;
	static const char attribute[] = "Object Type";

	if (!valid_id(id))
		return 0;
	kmip_writer_init(&w, buf, cap);
	begin_request(&w, 0, KMIP_OP_GET_ATTRIBUTES);
	write_id(&w, id);
	kmip_write_text(&w, KMIP_TAG_ATTRIBUTE_NAME, attribute, strlen(attribute));
	return end_request(&w);
}

/* Encrypt or Decrypt with AES-CBC and PKCS#5 padding */
static size_t
cipher_request(uint8_t *buf, size_t cap, uint32_t operation, const char *id,
			   const uint8_t *data, size_t len,
			   const uint8_t *iv, size_t iv_len)
{
	KmipWriter	w;

	if (!valid_id(id) || data == NULL || len == 0)
		return 0;
	kmip_writer_init(&w, buf, cap);
	begin_request(&w, 2, operation);
	write_id(&w, id);
	kmip_begin_struct(&w, KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS);
	kmip_write_enum(&w, KMIP_TAG_BLOCK_CIPHER_MODE, 0x01);	/* CBC */
	kmip_write_enum(&w, KMIP_TAG_PADDING_METHOD, 0x03);	/* PKCS5 */
	kmip_write_enum(&w, KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM, 0x03);	/* AES */
	if (operation == KMIP_OP_ENCRYPT)
		kmip_write_bool(&w, KMIP_TAG_RANDOM_IV, true);
	kmip_end_struct(&w);
	kmip_write_bytes(&w, KMIP_TAG_DATA, data, len);
	if (iv != NULL)
		kmip_write_bytes(&w, KMIP_TAG_IV_COUNTER_NONCE, iv, iv_len);
	return end_request(&w);
}

size_t
kmip_request_encrypt(uint8_t *buf, size_t cap, const char *id,
					 const uint8_t *data, size_t len)
{
	return cipher_request(buf, cap, KMIP_OP_ENCRYPT, id, data, len, NULL, 0);
}

size_t
kmip_request_decrypt(uint8_t *buf, size_t cap, const char *id,
					 const uint8_t *data, size_t len,
					 const uint8_t *iv, size_t iv_len)
{
	if (iv == NULL || iv_len == 0)
		return 0;
	return cipher_request(buf, cap, KMIP_OP_DECRYPT, id, data, len, iv, iv_len);
}

/* ----------------------------------------------------------------
 *		Reading
 * ----------------------------------------------------------------
 */

/* One item of checked bytes. */
typedef struct KmipItem
{
	uint32_t	tag;
	uint8_t		type;
	const uint8_t *value;
	size_t		len;			/* unpadded */
} KmipItem;

size_t
kmip_response_length(const uint8_t *header)
{
	uint32_t	len;

	if (header == NULL ||
		header[0] != 0x42 || header[1] != 0x00 || header[2] != 0x7B ||
		header[3] != KMIP_TYPE_STRUCTURE)
		return 0;
	len = get_u32(header + 4);
	if (len % 8 != 0 || len > KMIP_MAX_MESSAGE_LEN - KMIP_HEADER_LEN)
		return 0;
	return KMIP_HEADER_LEN + (size_t) len;
}

/* Read the header of the item at p (avail bytes left); false if it cannot fit. */
static bool
read_item(const uint8_t *p, size_t avail, KmipItem *item)
{
	uint32_t	len;

	if (avail < KMIP_HEADER_LEN)
		return false;
	len = get_u32(p + 4);
	if (len > avail - KMIP_HEADER_LEN ||
		padded_len(len) > avail - KMIP_HEADER_LEN)
		return false;
	item->tag = ((uint32_t) p[0] << 16) | ((uint32_t) p[1] << 8) | p[2];
	item->type = p[3];
	item->value = p + KMIP_HEADER_LEN;
	item->len = len;
	return true;
}

/* The length a type must have, 0 for variable, -1 for an unknown type. */
static int
fixed_len(uint8_t type)
{
	switch (type)
	{
		case KMIP_TYPE_INTEGER:
		case KMIP_TYPE_ENUMERATION:
		case KMIP_TYPE_INTERVAL:
			return 4;
		case KMIP_TYPE_LONG_INTEGER:
		case KMIP_TYPE_BOOLEAN:
		case KMIP_TYPE_DATE_TIME:
			return 8;
		case KMIP_TYPE_STRUCTURE:
		case KMIP_TYPE_TEXT_STRING:
		case KMIP_TYPE_BYTE_STRING:
			return 0;
		case KMIP_TYPE_BIG_INTEGER:
			return 0;
		default:
			return -1;
	}
}

/* Check every item in value[0..len) at nesting depth depth. */
static const char *
check_items(const uint8_t *value, size_t len, int depth)
{
	size_t		pos = 0;

	if (depth > KMIP_MAX_DEPTH)
		return "structures nest too deeply";
	while (pos < len)
	{
		KmipItem	item;
		int			want;
		const char *problem;

		if (!read_item(value + pos, len - pos, &item))
			return "an item does not fit in its structure";
		if ((item.tag >> 16) != 0x42 && (item.tag >> 16) != 0x54)
			return "an item has a tag outside the KMIP ranges";
		want = fixed_len(item.type);
		if (want < 0)
			return "an item has an unknown type";
		if (want > 0 && item.len != (size_t) want)
			return "an item has the wrong length for its type";
		if (item.type == KMIP_TYPE_BIG_INTEGER && item.len % 8 != 0)
			return "a big integer is not a multiple of 8 bytes";
		for (size_t i = item.len; i < padded_len(item.len); i++)
			if (item.value[i] != 0)
				return "an item's padding is not zero";
		if (item.type == KMIP_TYPE_BOOLEAN &&
			(get_u32(item.value) != 0 || get_u32(item.value + 4) > 1))
			return "a boolean is neither 0 nor 1";
		if (item.type == KMIP_TYPE_STRUCTURE &&
			(problem = check_items(item.value, item.len, depth + 1)) != NULL)
			return problem;
		pos += KMIP_HEADER_LEN + padded_len(item.len);
	}
	return NULL;
}

/* The first child of structure s with tag; false if there is none. */
static bool
find_child(const KmipItem *s, uint32_t tag, KmipItem *child)
{
	size_t		pos = 0;

	while (pos < s->len)
	{
		if (!read_item(s->value + pos, s->len - pos, child))
			return false;
		if (child->tag == tag)
			return true;
		pos += KMIP_HEADER_LEN + padded_len(child->len);
	}
	return false;
}

/* The first child with tag, which must be a structure. */
static bool
find_struct(const KmipItem *s, uint32_t tag, KmipItem *child)
{
	return find_child(s, tag, child) && child->type == KMIP_TYPE_STRUCTURE;
}

/* An enumeration child into *out; false if absent, "bad" if not an enumeration. */
static bool
find_enum(const KmipItem *s, uint32_t tag, uint32_t *out, bool *bad)
{
	KmipItem	child;

	if (!find_child(s, tag, &child))
		return false;
	if (child.type != KMIP_TYPE_ENUMERATION)
	{
		*bad = true;
		return false;
	}
	*out = get_u32(child.value);
	return true;
}

/* A text or byte string child into *out (by type); false if absent. */
static bool
find_string(const KmipItem *s, uint32_t tag, uint8_t type, KmipBytes *out,
			bool *bad)
{
	KmipItem	child;

	if (!find_child(s, tag, &child))
		return false;
	if (child.type != type)
	{
		*bad = true;
		return false;
	}
	out->data = child.value;
	out->len = child.len;
	return true;
}

/* Get: the object type and the key block of the object */
static const char *
read_get_payload(const KmipItem *payload, KmipResponse *out)
{
	KmipItem	object;
	KmipItem	block;
	KmipItem	value;
	KmipItem	wrapping;
	bool		bad = false;
	uint32_t	tag;

	if (!find_enum(payload, KMIP_TAG_OBJECT_TYPE, &out->object_type, &bad))
		return bad ? "ObjectType is not an enumeration" : "the Get response has no ObjectType";
	switch (out->object_type)
	{
		case KMIP_OBJECT_SECRET_DATA:
			tag = KMIP_TAG_SECRET_DATA;
			break;
		case KMIP_OBJECT_SYMMETRIC_KEY:
			tag = KMIP_TAG_SYMMETRIC_KEY;
			break;
		default:
			return NULL;		/* the caller reports the type */
	}
	if (!find_struct(payload, tag, &object) ||
		!find_struct(&object, KMIP_TAG_KEY_BLOCK, &block))
		return "the Get response has no key block";
	if (!find_enum(&block, KMIP_TAG_KEY_FORMAT_TYPE, &out->key_format_type, &bad))
		return bad ? "KeyFormatType is not an enumeration" : "the key block has no KeyFormatType";
	out->key_wrapped = find_child(&block, KMIP_TAG_KEY_WRAPPING_DATA, &wrapping);
	if (out->key_wrapped)
		return NULL;			/* the caller refuses wrapped keys */
	if (!find_struct(&block, KMIP_TAG_KEY_VALUE, &value))
		return "the key block has no KeyValue structure";
	if (!find_string(&value, KMIP_TAG_KEY_MATERIAL, KMIP_TYPE_BYTE_STRING,
					 &out->key_material, &bad))
		return bad ? "KeyMaterial is not a byte string" : "the key value has no KeyMaterial";
	return NULL;
}

/* GetAttributes: the "Object Type" attribute, if the server sent it */
static const char *
read_attributes_payload(const KmipItem *payload, KmipResponse *out)
{
	size_t		pos = 0;

	while (pos < payload->len)
	{
		KmipItem	attr;
		KmipItem	name;
		KmipItem	value;

		(void) read_item(payload->value + pos, payload->len - pos, &attr);
		pos += KMIP_HEADER_LEN + padded_len(attr.len);
		if (attr.tag != KMIP_TAG_ATTRIBUTE || attr.type != KMIP_TYPE_STRUCTURE)
			continue;
		if (!find_child(&attr, KMIP_TAG_ATTRIBUTE_NAME, &name) ||
			name.type != KMIP_TYPE_TEXT_STRING ||
			name.len != strlen("Object Type") ||
			memcmp(name.value, "Object Type", name.len) != 0)
			continue;
		if (!find_child(&attr, KMIP_TAG_ATTRIBUTE_VALUE, &value) ||
			value.type != KMIP_TYPE_ENUMERATION)
			return "the Object Type attribute is not an enumeration";
		out->object_type = get_u32(value.value);
		return NULL;
	}
	return NULL;
}

static const char *
read_payload(const KmipItem *payload, KmipResponse *out)
{
	bool		bad = false;

	(void) find_string(payload, KMIP_TAG_UNIQUE_IDENTIFIER, KMIP_TYPE_TEXT_STRING,
					   &out->unique_identifier, &bad);
	if (bad)
		return "UniqueIdentifier is not a text string";
	switch (out->operation)
	{
		case KMIP_OP_GET:
			return read_get_payload(payload, out);
		case KMIP_OP_GET_ATTRIBUTES:
			return read_attributes_payload(payload, out);
		case KMIP_OP_ENCRYPT:
		case KMIP_OP_DECRYPT:
			(void) find_string(payload, KMIP_TAG_DATA, KMIP_TYPE_BYTE_STRING,
							   &out->data, &bad);
			(void) find_string(payload, KMIP_TAG_IV_COUNTER_NONCE, KMIP_TYPE_BYTE_STRING,
							   &out->iv, &bad);
			return bad ? "Data or IVCounterNonce is not a byte string" : NULL;
		default:
			return NULL;
	}
}

const char *
kmip_parse_response(const uint8_t *msg, size_t len, KmipResponse *out)
{
	KmipItem	message;
	KmipItem	header;
	KmipItem	batch;
	KmipItem	payload;
	const char *problem;
	bool		bad = false;

	memset(out, 0, sizeof(*out));
	if (msg == NULL || len < KMIP_HEADER_LEN || kmip_response_length(msg) != len)
		return "not a response message";
	if ((problem = check_items(msg, len, 0)) != NULL)
		return problem;
	(void) read_item(msg, len, &message);
	if (!find_struct(&message, KMIP_TAG_RESPONSE_HEADER, &header))
		return "the response has no header";
	if (!find_struct(&message, KMIP_TAG_BATCH_ITEM, &batch))
		return "the response has no batch item";
	(void) find_enum(&batch, KMIP_TAG_OPERATION, &out->operation, &bad);
	if (!find_enum(&batch, KMIP_TAG_RESULT_STATUS, &out->result_status, &bad))
		return bad ? "ResultStatus is not an enumeration" : "the batch item has no ResultStatus";
	(void) find_enum(&batch, KMIP_TAG_RESULT_REASON, &out->result_reason, &bad);
	(void) find_string(&batch, KMIP_TAG_RESULT_MESSAGE, KMIP_TYPE_TEXT_STRING,
					   &out->result_message, &bad);
	if (bad)
		return "Operation, ResultReason or ResultMessage has the wrong type";
	if (out->result_status != KMIP_STATUS_SUCCESS)
		return NULL;
	if (!find_struct(&batch, KMIP_TAG_RESPONSE_PAYLOAD, &payload))
	{
		/* an empty payload may be left out */
		payload.value = NULL;
		payload.len = 0;
	}
	return read_payload(&payload, out);
}

/* ----------------------------------------------------------------
 *		Names
 * ----------------------------------------------------------------
 */

const char *
kmip_operation_name(uint32_t operation)
{
	switch (operation)
	{
		case KMIP_OP_CREATE:
			return "Create";
		case KMIP_OP_REGISTER:
			return "Register";
		case KMIP_OP_GET:
			return "Get";
		case KMIP_OP_GET_ATTRIBUTES:
			return "GetAttributes";
		case KMIP_OP_ACTIVATE:
			return "Activate";
		case KMIP_OP_ENCRYPT:
			return "Encrypt";
		case KMIP_OP_DECRYPT:
			return "Decrypt";
		default:
			return "an unexpected operation";
	}
}

const char *
kmip_object_type_name(uint32_t object_type)
{
	static const char *const names[] = {
		"no object type", "Certificate", "SymmetricKey", "PublicKey",
		"PrivateKey", "SplitKey", "Template", "SecretData", "OpaqueObject",
		"PGPKey"
	};

	if (object_type < sizeof(names) / sizeof(names[0]))
		return names[object_type];
	return "an unknown object type";
}

const char *
kmip_result_reason_name(uint32_t reason)
{
	static const char *const names[] = {
		"no reason given", "Item Not Found", "Response Too Large",
		"Authentication Not Successful", "Invalid Message",
		"Operation Not Supported", "Missing Data", "Invalid Field",
		"Feature Not Supported", "Operation Canceled By Requester",
		"Cryptographic Failure", "Illegal Operation", "Permission Denied",
		"Object Archived", "Index Out of Bounds",
		"Application Namespace Not Supported", "Key Format Type Not Supported",
		"Key Compression Type Not Supported", "Encoding Option Error",
		"Key Value Not Present", "Attestation Required", "Attestation Failed",
		"Sensitive", "Not Extractable", "Object Already Exists"
	};

	if (reason < sizeof(names) / sizeof(names[0]))
		return names[reason];
	if (reason == 0x100)
		return "General Failure";
	return "an unknown reason";
}

const char *
kmip_result_status_name(uint32_t status)
{
	switch (status)
	{
		case 0:
			return "Success";
		case 1:
			return "Operation Failed";
		case 2:
			return "Operation Pending";
		case 3:
			return "Operation Undone";
		default:
			return "an unknown status";
	}
}
