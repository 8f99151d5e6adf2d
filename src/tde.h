/*-------------------------------------------------------------------------
 *
 * tde.h
 *	  Transparent at-rest encryption: the encrypted_heap table access
 *	  method.  Shared declarations of
 *
 *	  tde_keys.c             relation keys: bsoncrypt.relation_keys, the
 *	                         per-backend cache, AES-256-GCM of one value
 *	  tde_key_uses.c         how many encryptions each key has done
 *	                         (shared memory, bsoncrypt.relation_key_uses)
 *	  tde_dropped_keys.c     keys of dropped files: the sql_drop trigger
 *	                         and drop_unused_relation_keys()
 *	  encrypted_heap.c       the table AM: heap's routine wrapped, tuples
 *	                         encrypted on the way in, decrypted on the way out
 *	  encrypted_heap_slot.c  the slot that decrypts columns on demand
 *	  encrypted_heap_build.c index builds, CIC validation, CLUSTER/VACUUM
 *	                         FULL copies (heap's versions read ciphertext)
 *	  tde_decoding.c         logical decoding: the "bsoncrypt" output
 *	                         plugin, and refusing plugins that would
 *	                         receive ciphertext
 *
 *	  Stored value format (the payload of an ordinary varlena, so every
 *	  on-page tuple stays a valid tuple of the relation's descriptor):
 *
 *	  byte 0       format: TDE_FORMAT_DATA (the plaintext is the value's
 *	               data, its varlena header left out) or TDE_FORMAT_DATUM
 *	               (the plaintext is a whole inline-compressed varlena)
 *	  bytes 1..2   key number (big endian): relation_keys.key_number, which
 *	               names the key among the keys of this relation file
 *	  bytes 3..14  random 96-bit GCM nonce
 *	  ...          AES-256-GCM ciphertext
 *	  last 16      GCM tag
 *
 *	  The associated data is the format byte, the key's full 32-bit id and
 *	  the attribute number.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_TDE_H
#define BSONCRYPT_TDE_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tableam.h"
#include "executor/tuptable.h"
#include "storage/relfilenode.h"
#include "utils/relcache.h"

#define TDE_FORMAT_DATA		0xE2
#define TDE_FORMAT_DATUM	0xE3
#define TDE_KEY_LEN			32
#define TDE_NONCE_LEN		12
#define TDE_TAG_LEN			16
#define TDE_KEY_NUMBERS		65536	/* key numbers are 16 bits */
#define TDE_HEADER_LEN		(1 + 2 + TDE_NONCE_LEN)
#define TDE_OVERHEAD		(TDE_HEADER_LEN + TDE_TAG_LEN)

/* column numbers of bsoncrypt.relation_keys (extension/parts/40_encrypted_heap.sql) */
#define Anum_relation_keys_key_id				1
#define Anum_relation_keys_reltablespace		2
#define Anum_relation_keys_relfilenode			3
#define Anum_relation_keys_key_material			4
#define Anum_relation_keys_provider				5
#define Anum_relation_keys_master_key_version	6
#define Anum_relation_keys_creation_date		7
#define Anum_relation_keys_update_date			8
#define Anum_relation_keys_key_number			9
#define Natts_relation_keys						9

typedef struct TdeKey TdeKey;	/* opaque: cached, unwrapped relation key */

/*
 * The extension's relations at-rest encryption uses: all Oids, in the order
 * of the names in tde_keys.c's resolve_relids().
 */
typedef struct TdeRelids
{
	Oid			relation_keys;
	Oid			relation_keys_pkey;
	Oid			relation_keys_file;
	Oid			relation_keys_file_number;
	Oid			relation_key_ids;
	Oid			relation_key_uses;
	Oid			relation_key_uses_pkey;
} TdeRelids;

/* tde_keys.c */
extern int	tde_key_max_uses;
extern void tde_define_settings(void);
extern const TdeRelids *tde_relids(bool missing_ok);
extern void tde_create_file_key(Relation rel, const RelFileNode *rnode, char persistence);
extern void tde_move_file_keys(const RelFileNode *from, const RelFileNode *to,
							   char persistence);
extern uint64 tde_drop_file_keys(Oid reltablespace, Oid relfilenode,
								 char persistence);
extern TdeKey *tde_current_key(Relation rel);
extern TdeKey *tde_key_for_write(Relation rel);
extern TdeKey *tde_key_by_id(int32 key_id);
extern struct varlena *tde_encrypt_value(TdeKey *key, AttrNumber attnum,
										 const struct varlena *plain);
extern struct varlena *tde_decrypt_value(Relation rel, AttrNumber attnum,
										 struct varlena *stored,
										 ItemPointer tid);
extern int32 tde_key_id(const TdeKey *key);
extern bool tde_key_is_of_file(const TdeKey *key, const RelFileNode *rnode);
extern uint64 tde_keys_epoch(void);
extern void tde_seal(TdeKey *key, const uint8 *aad, int aadlen,
					 const uint8 *plain, Size len, uint8 *nonce,
					 uint8 *ciphertext, uint8 *tag);
extern bool tde_open(TdeKey *key, const uint8 *aad, int aadlen,
					 const uint8 *nonce, const uint8 *ciphertext, Size len,
					 const uint8 *tag, uint8 *out);
extern void tde_encipher_block(TdeKey *key, const uint8 *in, uint8 *out);
extern bool tde_decipher_block_by_id(int32 key_id, const uint8 *in, uint8 *out);

/* tde_key_uses.c */
extern void tde_key_uses_init(void);
extern void tde_key_uses_insert(int32 key_id);
extern bool tde_key_use(int32 key_id);

/* encrypted_heap.c */
extern int	tde_compress_min;
extern void tde_install_hooks(void);
extern bool tde_is_encrypted_rel(Relation rel);
extern bool tde_is_encrypted_am(Oid relam);
extern HeapTuple tde_decrypt_tuple(Relation rel, HeapTuple tuple,
								   MemoryContext dest);
extern HeapTuple tde_encrypt_values(Relation rel, Datum *values, bool *isnull,
									ItemPointer old_tid, MemoryContext dest);
extern void tde_decrypt_datums(Relation rel, TupleDesc desc, HeapTuple stored,
							   Datum *values, bool *isnull, int from, int to,
							   MemoryContext cxt, bool keep_toast_pointers);
extern HeapTuple tde_form_with_header(TupleDesc desc, Datum *values,
									  bool *isnull, HeapTuple stored);
extern void tde_copy_header(HeapTuple plain, HeapTuple stored);
extern void tde_store_plain(HeapTuple plain, TupleTableSlot *slot);
extern void tde_store_from_bslot(Relation rel, TupleTableSlot *bslot,
								 TupleTableSlot *slot);
extern MemoryContext tde_scratch_context(void);
extern const TableAmRoutine *tde_heap_routine(void);

/* encrypted_heap_slot.c */
extern PGDLLIMPORT const TupleTableSlotOps TTSOpsEncryptedHeap;
extern void tde_slot_store_stored(TupleTableSlot *slot, Relation rel,
								  HeapTuple tuple, Buffer buffer);
extern void tde_slot_store_plain(TupleTableSlot *slot, HeapTuple tuple);
extern void tde_slot_written(TupleTableSlot *slot, HeapTuple stored);

/* encrypted_heap_build.c */
extern double tde_index_build_range_scan(Relation rel, Relation index,
										 struct IndexInfo *indexInfo,
										 bool allow_sync, bool anyvisible,
										 bool progress,
										 BlockNumber start_blockno,
										 BlockNumber numblocks,
										 IndexBuildCallback callback,
										 void *callback_state,
										 TableScanDesc scan);
extern void tde_index_validate_scan(Relation rel, Relation index,
									struct IndexInfo *indexInfo,
									Snapshot snapshot,
									struct ValidateIndexState *state);
extern void tde_copy_for_cluster(Relation OldHeap, Relation NewHeap,
								 Relation OldIndex, bool use_sort,
								 TransactionId OldestXmin,
								 TransactionId *xid_cutoff,
								 MultiXactId *multi_cutoff,
								 double *num_tuples,
								 double *tups_vacuumed,
								 double *tups_recently_dead);
extern TableScanDesc tde_inner_scan(TableScanDesc scan);

/* tde_decoding.c */
extern void tde_define_decoding_settings(void);
extern void tde_check_decoding(void);
extern void tde_note_walsender_read(Relation rel);

#endif							/* BSONCRYPT_TDE_H */
