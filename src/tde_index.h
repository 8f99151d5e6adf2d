/*-------------------------------------------------------------------------
 *
 * tde_index.h
 *	  At-rest encryption of index keys: the encrypted_btree index access
 *	  method.  Shared declarations of
 *
 *	  sealed_key.c            the bsoncrypt.sealed_key type: index keys as
 *	                          AES-256-GCM ciphertext (stored) or as plain
 *	                          probes (scan keys, never stored), the
 *	                          comparison functions that open both, and the
 *	                          per-backend cache of opened keys
 *	  encrypted_btree.c       the index AM: btree's routine table with the
 *	                          callbacks that see key values wrapped
 *	  encrypted_btree_build.c ambuild: sort the plaintext, insert sealed
 *	  encrypted_btree_ddl.c   the DDL around it: bsoncrypt.encrypt_indexes,
 *	                          the WITH (encrypted = true) marker, keys of
 *	                          moved and rebuilt index files, ON CONFLICT
 *
 *	  Stored key format (the payload of a bsoncrypt.sealed_key varlena; the
 *	  index's key columns are of that type, the opclasses' storage type):
 *
 *	  byte 0       0xE7, or 0xE8: the plaintext is a whole compressed varlena
 *	  bytes 1..4   relation key id (big endian; keys are per index file)
 *	  byte 5       type of the plaintext: the code of a common built-in
 *	               type (sealed_key.c's type_codes), or 0: the pg_type oid
 *	               follows in 4 bytes (big endian)
 *	  6 bytes      heap TID the entry points at (block, offset; big endian)
 *	  12 bytes     random 96-bit GCM nonce
 *	  ...          AES-256-GCM ciphertext of the value's bytes (its data
 *	               without varlena header, or the fixed-length value)
 *	  last 16      GCM tag
 *
 *	  The associated data is the header before the nonce (12 or 16 bytes):
 *	  a key names its type and the heap row it belongs to, and decrypts
 *	  under no other key.  The TID is stored, not only authenticated:
 *	  btree copies keys into pivot tuples, whose TID field is a downlink.
 *	  (Format 0xE5, before 2026-12, stored the type oid and a flags byte
 *	  always; such keys are reported as invalid: REINDEX.)
 *
 *	  Short fixed-length keys (byval types with a type code, 8 bytes at
 *	  most) are stored in 21 bytes when bsoncrypt.index_keys_as_blocks is on
 *	  (the default), encode-then-encipher (sealed_key.c says why that is
 *	  sound):
 *
 *	  byte 0       0xE9
 *	  bytes 1..4   relation key id (big endian)
 *	  16 bytes     AES-256 (one block, no mode) of: the value's bytes as a
 *	               Datum stores them, zero-padded to 8; the heap TID (block
 *	               4 bytes, offset 2, big endian; offsets up to 0x7FF); the
 *	               type code; 0xE9.
 *
 *	  Both formats can be in one index (entries sealed under either
 *	  setting); comparisons open each by its format byte.
 *
 *	  A probe (format 0xE6) holds a plaintext value and its type; scans
 *	  turn their arguments into probes so that the comparison functions can
 *	  tell them from stored keys.  Probes live in backend memory only.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_TDE_INDEX_H
#define BSONCRYPT_TDE_INDEX_H

#include "postgres.h"

#include "access/amapi.h"
#include "nodes/execnodes.h"
#include "storage/itemptr.h"
#include "utils/relcache.h"

#define SEALED_FORMAT_PROBE		0xE6
#define SEALED_FORMAT_STORED	0xE7
#define SEALED_FORMAT_COMPRESSED 0xE8
#define SEALED_AAD_MIN			12	/* a type code */
#define SEALED_AAD_MAX			16	/* a type oid */
#define SEALED_NONCE_LEN		12
#define SEALED_TAG_LEN			16
#define SEALED_OVERHEAD_MIN		(SEALED_AAD_MIN + SEALED_NONCE_LEN + SEALED_TAG_LEN)
#define SEALED_FORMAT_BLOCK		0xE9
#define SEALED_BLOCK_LEN		21	/* format, key id, one AES block */

/* what opening a sealed key (stored or probe) gives */
typedef struct SealedValue
{
	Oid			typid;			/* type of value */
	Datum		value;			/* the plaintext datum */
	bool		stored;			/* a stored key (else a probe) */
	int32		key_id;			/* stored: the relation key */
	ItemPointerData tid;		/* stored: the heap TID it names */
} SealedValue;

/* sealed_key.c */
extern int	sealed_cache_kb;
extern bool sealed_block_keys;
extern void sealed_define_settings(void);
extern struct varlena *sealed_key_seal(Relation index, Oid typid, Datum value,
									   ItemPointer tid);
extern Datum sealed_key_probe(Oid typid, Datum value);
extern Datum sealed_key_probe_array(Oid elemtype, Datum array, Oid sealed_type);
extern void sealed_key_open(Datum datum, SealedValue *out);
extern int	sealed_key_compare(const SealedValue *a, const SealedValue *b,
							   Oid collation);
extern void sealed_key_wrap_operator(FmgrInfo *flinfo, MemoryContext cxt);
extern Oid	sealed_btree_family(Oid typid);

/* encrypted_btree.c */
extern bool eb_is_encrypted_index(Relation rel);
extern Oid	eb_am_oid(bool missing_ok);

/* encrypted_btree_build.c */
extern IndexBuildResult *eb_build(Relation heap, Relation index,
								  IndexInfo *indexInfo);

/* encrypted_btree_ddl.c */
extern bool eb_reloptions_marked(Relation index);
extern bytea *eb_options(Datum reloptions, bool validate);
extern void eb_define_settings(void);
extern void eb_install_hooks(void);
extern void eb_drop_keys_of_replaced_files(void);

#endif							/* BSONCRYPT_TDE_INDEX_H */
