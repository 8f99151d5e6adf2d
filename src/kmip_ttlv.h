/*-------------------------------------------------------------------------
 *
 * kmip_ttlv.h
 *	  KMIP 1.x messages in TTLV encoding: the requests bsoncrypt sends to a
 *	  KMIP server and a strict parser of its responses.
 *
 * This header and kmip_ttlv.c are plain C99 with no PostgreSQL, libbson or
 * OpenSSL header, so that they can be unit-tested on their own
 * (test/unit/test_kmip_ttlv.c).  Nothing here allocates memory: requests
 * are written into a buffer of the caller, and a parsed response points
 * into the caller's response bytes.  Secrets pass through only as the
 * caller's buffers; nothing here copies them elsewhere or prints them.
 *
 * TTLV: every item is a 3-byte tag (0x42xxxx), a 1-byte type, a 4-byte
 * big-endian value length, and the value padded with zeros to a multiple
 * of 8 bytes.  A Structure's value is a sequence of items.
 *
 * The requests are those libmongocrypt sends for its "kmip" KMS provider
 * (protocol 1.0 for Register, Activate and Get, 1.2 for Create, Encrypt
 * and Decrypt), plus GetAttributes of "Object Type" (protocol 1.0).
 *
 *-------------------------------------------------------------------------
 */
#ifndef KMIP_TTLV_H
#define KMIP_TTLV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* item types */
#define KMIP_TYPE_STRUCTURE		0x01
#define KMIP_TYPE_INTEGER		0x02
#define KMIP_TYPE_LONG_INTEGER	0x03
#define KMIP_TYPE_BIG_INTEGER	0x04
#define KMIP_TYPE_ENUMERATION	0x05
#define KMIP_TYPE_BOOLEAN		0x06
#define KMIP_TYPE_TEXT_STRING	0x07
#define KMIP_TYPE_BYTE_STRING	0x08
#define KMIP_TYPE_DATE_TIME		0x09
#define KMIP_TYPE_INTERVAL		0x0A

/* tags (KMIP 1.x) */
#define KMIP_TAG_ATTRIBUTE					0x420008
#define KMIP_TAG_ATTRIBUTE_NAME				0x42000A
#define KMIP_TAG_ATTRIBUTE_VALUE			0x42000B
#define KMIP_TAG_BATCH_COUNT				0x42000D
#define KMIP_TAG_BATCH_ITEM					0x42000F
#define KMIP_TAG_BLOCK_CIPHER_MODE			0x420011
#define KMIP_TAG_CRYPTOGRAPHIC_ALGORITHM	0x420028
#define KMIP_TAG_CRYPTOGRAPHIC_PARAMETERS	0x42002B
#define KMIP_TAG_IV_COUNTER_NONCE			0x42003D
#define KMIP_TAG_KEY_BLOCK					0x420040
#define KMIP_TAG_KEY_FORMAT_TYPE			0x420042
#define KMIP_TAG_KEY_MATERIAL				0x420043
#define KMIP_TAG_KEY_VALUE					0x420045
#define KMIP_TAG_KEY_WRAPPING_DATA			0x420046
#define KMIP_TAG_NAME						0x420053
#define KMIP_TAG_NAME_TYPE					0x420054
#define KMIP_TAG_NAME_VALUE					0x420055
#define KMIP_TAG_OBJECT_TYPE				0x420057
#define KMIP_TAG_OPERATION					0x42005C
#define KMIP_TAG_PADDING_METHOD				0x42005F
#define KMIP_TAG_PROTOCOL_VERSION			0x420069
#define KMIP_TAG_PROTOCOL_VERSION_MAJOR		0x42006A
#define KMIP_TAG_PROTOCOL_VERSION_MINOR		0x42006B
#define KMIP_TAG_REQUEST_HEADER				0x420077
#define KMIP_TAG_REQUEST_MESSAGE			0x420078
#define KMIP_TAG_REQUEST_PAYLOAD			0x420079
#define KMIP_TAG_RESPONSE_HEADER			0x42007A
#define KMIP_TAG_RESPONSE_MESSAGE			0x42007B
#define KMIP_TAG_RESPONSE_PAYLOAD			0x42007C
#define KMIP_TAG_RESULT_MESSAGE				0x42007D
#define KMIP_TAG_RESULT_REASON				0x42007E
#define KMIP_TAG_RESULT_STATUS				0x42007F
#define KMIP_TAG_SECRET_DATA				0x420085
#define KMIP_TAG_SECRET_DATA_TYPE			0x420086
#define KMIP_TAG_SYMMETRIC_KEY				0x42008F
#define KMIP_TAG_TEMPLATE_ATTRIBUTE			0x420091
#define KMIP_TAG_UNIQUE_IDENTIFIER			0x420094
#define KMIP_TAG_DATA						0x4200C2
#define KMIP_TAG_RANDOM_IV					0x4200C5

/* operations */
#define KMIP_OP_CREATE			0x01
#define KMIP_OP_REGISTER		0x03
#define KMIP_OP_GET				0x0A
#define KMIP_OP_GET_ATTRIBUTES	0x0B
#define KMIP_OP_ACTIVATE		0x12
#define KMIP_OP_ENCRYPT			0x1F
#define KMIP_OP_DECRYPT			0x20

/* object types */
#define KMIP_OBJECT_SYMMETRIC_KEY	0x02
#define KMIP_OBJECT_SECRET_DATA		0x07

/* result status */
#define KMIP_STATUS_SUCCESS			0x00

/* result reasons the client reports specially */
#define KMIP_REASON_ITEM_NOT_FOUND	0x01
#define KMIP_REASON_CRYPTOGRAPHIC_FAILURE	0x0A

/* key format types accepted for a SecretData's key material */
#define KMIP_FORMAT_RAW			0x01
#define KMIP_FORMAT_OPAQUE		0x02

/* an item header: tag, type, length */
#define KMIP_HEADER_LEN			8
/* deepest structure nesting a response may have */
#define KMIP_MAX_DEPTH			16
/* the largest response message accepted */
#define KMIP_MAX_MESSAGE_LEN	65536
/* the longest unique identifier accepted or sent */
#define KMIP_MAX_ID_LEN			255

/*
 * A writer of TTLV into a buffer of the caller.  If the buffer is too
 * small or the structures do not balance, kmip_writer_finish fails; the
 * buffer may then hold a partial request (the caller zeroes it if it held
 * a secret).
 */
typedef struct KmipWriter
{
	uint8_t    *buf;
	size_t		cap;
	size_t		len;
	int			depth;
	size_t		open[KMIP_MAX_DEPTH];	/* offsets of open structures */
	bool		failed;
} KmipWriter;

extern void kmip_writer_init(KmipWriter *w, uint8_t *buf, size_t cap);
extern void kmip_begin_struct(KmipWriter *w, uint32_t tag);
extern void kmip_end_struct(KmipWriter *w);
extern void kmip_write_integer(KmipWriter *w, uint32_t tag, int32_t value);
extern void kmip_write_enum(KmipWriter *w, uint32_t tag, uint32_t value);
extern void kmip_write_bool(KmipWriter *w, uint32_t tag, bool value);
extern void kmip_write_text(KmipWriter *w, uint32_t tag,
							const char *text, size_t len);
extern void kmip_write_bytes(KmipWriter *w, uint32_t tag,
							 const uint8_t *data, size_t len);
/* The message's length, or 0 if it did not fit or is unbalanced. */
extern size_t kmip_writer_finish(KmipWriter *w);

/*
 * Requests: each writes one request message of one batch item into buf
 * and returns its length, or 0 if buf is too small or an argument is
 * invalid (an empty or overlong unique identifier, a secret of another
 * length than the operation takes).
 *
 * register_secret: Register of a SecretData (type Seed, format Opaque)
 *	with Cryptographic Usage Mask 0 and, when name is not NULL, a Name.
 * create_aes256: Create of a 256-bit AES symmetric key usable to Encrypt
 *	and Decrypt, optionally named.
 * get_object_type: GetAttributes of "Object Type".
 * encrypt / decrypt: AES-CBC with PKCS#5 padding; Encrypt asks the server
 *	for a random IV, Decrypt passes it back.
 */
extern size_t kmip_request_register_secret(uint8_t *buf, size_t cap,
										   const uint8_t *secret,
										   size_t secret_len,
										   const char *name);
extern size_t kmip_request_create_aes256(uint8_t *buf, size_t cap,
										 const char *name);
extern size_t kmip_request_activate(uint8_t *buf, size_t cap, const char *id);
extern size_t kmip_request_get(uint8_t *buf, size_t cap, const char *id);
extern size_t kmip_request_get_object_type(uint8_t *buf, size_t cap,
										   const char *id);
extern size_t kmip_request_encrypt(uint8_t *buf, size_t cap, const char *id,
								   const uint8_t *data, size_t len);
extern size_t kmip_request_decrypt(uint8_t *buf, size_t cap, const char *id,
								   const uint8_t *data, size_t len,
								   const uint8_t *iv, size_t iv_len);

/*
 * The length of a whole response message, from its first KMIP_HEADER_LEN
 * bytes; 0 if they are not the header of a ResponseMessage structure or
 * the message would exceed KMIP_MAX_MESSAGE_LEN.
 */
extern size_t kmip_response_length(const uint8_t *header);

/* bytes inside a response */
typedef struct KmipBytes
{
	const uint8_t *data;
	size_t		len;
} KmipBytes;

/*
 * What bsoncrypt reads from a response of one batch item.  Fields the
 * response does not have are zero (or empty).  Byte fields point into the
 * response.
 */
typedef struct KmipResponse
{
	uint32_t	operation;
	uint32_t	result_status;
	uint32_t	result_reason;
	KmipBytes	result_message;
	KmipBytes	unique_identifier;
	uint32_t	object_type;	/* Get: the object's; GetAttributes: the
								 * "Object Type" attribute */
	uint32_t	key_format_type;	/* Get */
	bool		key_wrapped;	/* Get: the key block has wrapping data */
	KmipBytes	key_material;	/* Get: KeyBlock/KeyValue/KeyMaterial */
	KmipBytes	data;			/* Encrypt, Decrypt */
	KmipBytes	iv;				/* Encrypt */
} KmipResponse;

/*
 * Parse a whole response message (len bytes, as kmip_response_length
 * said).  Every item is checked: lengths within their structure, fixed
 * lengths of fixed-size types, zero padding, known types, nesting depth.
 * Returns NULL on success, else a static description of the problem.
 */
extern const char *kmip_parse_response(const uint8_t *msg, size_t len,
									   KmipResponse *out);

/* Names for messages; never NULL. */
extern const char *kmip_operation_name(uint32_t operation);
extern const char *kmip_object_type_name(uint32_t object_type);
extern const char *kmip_result_reason_name(uint32_t reason);
extern const char *kmip_result_status_name(uint32_t status);

#endif							/* KMIP_TTLV_H */
