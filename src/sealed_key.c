/*-------------------------------------------------------------------------
 *
 * sealed_key.c
 *	  The bsoncrypt.sealed_key type: what encrypted_btree indexes store in
 *	  place of each key value (see tde_index.h for the format), the
 *	  comparison functions of their operator classes, and a per-backend
 *	  cache of opened keys.
 *
 *	  btree compares keys through the opclass's support function 1 and its
 *	  scan keys' operators.  Both sides of every such call are sealed keys
 *	  here: a stored key (ciphertext, opened by decrypting it) or a probe
 *	  (a plaintext value a scan compares with, see encrypted_btree.c).  The
 *	  comparison then runs on the plaintexts with the btree comparison of
 *	  their types (the default btree operator family of the left type, as
 *	  the encrypted operator families mirror those).  Sealed keys name their
 *	  relation key by its id, so no relation is needed to open one.
 *
 *	  Short fixed-length keys (integers, dates, timestamps, floats, oids,
 *	  booleans) are stored as one AES-256 block holding the value and its
 *	  heap TID (encode-then-encipher, below): opening one is an AES
 *	  decryption, some 30 instructions with AES-NI.  Other keys are
 *	  AES-256-GCM ciphertext; opening one costs a GCM decryption (about
 *	  25 ns with AES-NI, gcm_key.c), and a btree descent makes one per
 *	  comparison.  For those, the last few dozen keys opened are kept (a
 *	  scan opens the entry it returns several times), and a larger cache
 *	  of bsoncrypt.index_key_cache kilobytes per backend (4 MB by
 *	  default), mostly the upper levels of the trees.  Both are looked up
 *	  by the stored bytes themselves (every byte compared, so a changed key
 *	  never hits), filled when a key is sealed or opened, emptied (and
 *	  zeroed) when relation keys change.  Block keys bypass them: a
 *	  decryption costs less than a lookup.
 *
 *	  Plaintext made while comparing lives in a scratch context that the
 *	  next comparison resets: btree does not expect its comparisons to
 *	  allocate, and a scan compares millions of times in one context.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/heaptoast.h"
#include "access/nbtree.h"
#include "access/toast_compression.h"
#include "access/toast_internals.h"
#include "catalog/pg_am_d.h"
#include "catalog/pg_type_d.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "tde.h"
#include "tde_index.h"

PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_in);
PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_out);
PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_cmp);
PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_lt);
PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_le);
PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_eq);
PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_ge);
PG_FUNCTION_INFO_V1(bsoncrypt_sealed_key_gt);

/* plaintexts at least this large are compressed before they are sealed */
#define SEALED_COMPRESS_MIN		TOAST_INDEX_TARGET

/*
 * Where a probe keeps its flags, its type and its value image, from the
 * start of its data: with the 4-byte header probes are made with, the
 * image is 8-aligned.  A probe of a byval type holds the Datum itself
 * (PROBE_DATUM), which opens without its type's length, and the type's
 * code if it is a block type (block_value_len), which opens it without a
 * lookup (open_quick).
 */
#define PROBE_FLAGS				1
#define PROBE_CODE				2
#define PROBE_TYPE				4
#define PROBE_IMAGE				12
#define PROBE_HEADER			(VARHDRSZ + PROBE_IMAGE)
#define PROBE_DATUM				0x01

int			sealed_cache_kb = 4096;
bool		sealed_block_keys = true;

/* ------------------------------------------------------------------------
 * Type facts and btree comparison functions, cached per backend
 * ------------------------------------------------------------------------
 */
typedef struct TypeFacts
{
	Oid			typid;			/* hash key */
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Oid			family;			/* default btree operator family */
} TypeFacts;

typedef struct CmpEntry
{
	Oid			types[2];		/* hash key: left, right */
	FmgrInfo	flinfo;			/* btree support function 1 */
} CmpEntry;

static HTAB *type_facts = NULL;
static HTAB *cmp_procs = NULL;

static HTAB *
make_cache(const char *name, Size keysize, Size entrysize)
{
	HASHCTL		ctl;

	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = TopMemoryContext;
	return hash_create(name, 32, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* The default btree operator family of a type (InvalidOid if none). */
Oid
sealed_btree_family(Oid typid)
{
	Oid			opclass = GetDefaultOpClass(typid, BTREE_AM_OID);

	return OidIsValid(opclass) ? get_opclass_family(opclass) : InvalidOid;
}

static const TypeFacts *last_facts = NULL;	/* the last type asked for */

static const TypeFacts *
look_up_type_facts(Oid typid)
{
	TypeFacts  *facts;
	bool		found;

	if (type_facts == NULL)
		type_facts = make_cache("bsoncrypt sealed key types", sizeof(Oid), sizeof(TypeFacts));
	facts = hash_search(type_facts, &typid, HASH_ENTER, &found);
	if (!found)
	{
		PG_TRY();
		{
			get_typlenbyvalalign(typid, &facts->typlen, &facts->typbyval, &facts->typalign);
			facts->family = sealed_btree_family(typid);
		}
		PG_CATCH();
		{
			hash_search(type_facts, &typid, HASH_REMOVE, NULL);
			PG_RE_THROW();
		}
		PG_END_TRY();
		if (facts->typlen == -2)
		{
			hash_search(type_facts, &typid, HASH_REMOVE, NULL);
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("encrypted_btree cannot index values of type %s",
							format_type_be(typid))));
		}
	}
	last_facts = facts;
	return facts;
}

static inline const TypeFacts *
type_facts_of(Oid typid)
{
	if (likely(last_facts != NULL && last_facts->typid == typid))
		return last_facts;
	return look_up_type_facts(typid);
}

/* btree's comparison of a left and a right type, from the left type's family */
static FmgrInfo *
cmp_proc_of(Oid left, Oid right)
{
	static CmpEntry *last = NULL;
	Oid			key[2] = {left, right};
	CmpEntry   *entry;
	bool		found;

	if (last != NULL && last->types[0] == left && last->types[1] == right)
		return &last->flinfo;
	if (cmp_procs == NULL)
		cmp_procs = make_cache("bsoncrypt sealed key comparisons", sizeof(key), sizeof(CmpEntry));
	entry = hash_search(cmp_procs, key, HASH_FIND, NULL);
	if (entry == NULL)
	{
		Oid			family = type_facts_of(left)->family;
		Oid			proc = OidIsValid(family) ?
			get_opfamily_proc(family, left, right, BTORDER_PROC) : InvalidOid;

		if (!OidIsValid(proc))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("no btree comparison between types %s and %s",
							format_type_be(left), format_type_be(right))));
		entry = hash_search(cmp_procs, key, HASH_ENTER, &found);
		fmgr_info_cxt(proc, &entry->flinfo, TopMemoryContext);
	}
	last = entry;
	return &entry->flinfo;
}

/* ------------------------------------------------------------------------
 * The stored format's header (tde_index.h)
 * ------------------------------------------------------------------------
 */

/*
 * Common built-in types, by their one-byte code in a stored key (never
 * renumber: the codes are stored).  Other types store their oid.
 */
static const Oid type_codes[] = {
	InvalidOid,					/* 0: the oid follows */
	INT2OID, INT4OID, INT8OID, TEXTOID, VARCHAROID, BPCHAROID, UUIDOID,
	NUMERICOID, TIMESTAMPTZOID, TIMESTAMPOID, DATEOID, BYTEAOID, FLOAT4OID,
	FLOAT8OID, OIDOID, BOOLOID, NAMEOID, TIMEOID, INTERVALOID,
};

static uint8
type_code(Oid typid)
{
	for (int i = 1; i < lengthof(type_codes); i++)
		if (type_codes[i] == typid)
			return (uint8) i;
	return 0;
}

/* the length of a stored key's header, its associated data */
static inline Size
stored_aad_len(const uint8 *p)
{
	return p[5] == 0 ? SEALED_AAD_MAX : SEALED_AAD_MIN;
}

/* ------------------------------------------------------------------------
 * The cache of opened keys
 *
 * Three parts, all direct-mapped by bits of the stored key's random nonce
 * and all holding whole copies of the stored bytes (every byte compared on
 * lookup, so a changed key never hits):
 * - recent: the last few dozen keys opened, small enough to stay in the
 *   CPU's first-level cache.  A scan opens the entry it returns up to three
 *   times (its descent, btree's check of the scan keys, check_entry).
 * - slots: bsoncrypt.index_key_cache kilobytes of keys opened again after
 *   a while: the upper levels of the trees, hot keys.  A key enters when
 *   it was missed twice (seen says so), or when it was just sealed: keys
 *   met once, such as most leaf keys of a random lookup, would only evict
 *   the keys every descent needs, and make each lookup a memory stall.
 * - seen: a fingerprint of each recently missed key, for the above.
 * ------------------------------------------------------------------------
 */
/* a slot holds a text key of up to ~100 bytes; lookups read the lines they compare */
#define SLOT_SIZE		256
#define SLOT_DATA		(SLOT_SIZE - 2 * sizeof(uint16))
#define RECENT_SLOTS	32
#define SEEN_SLOTS		16384

typedef struct OpenedSlot
{
	uint16		stored_len;		/* 0: empty */
	uint16		image_len;
	uint8		data[SLOT_DATA];	/* stored bytes, then the image */
} OpenedSlot;

static OpenedSlot *slots = NULL;	/* SLOT_SIZE-aligned */
static uint16 *slot_tags = NULL;	/* per slot: 0, or a tag of the key it holds */
static void *slots_alloc = NULL;
static uint32 nslots = 0;		/* a power of two, or 0 */
static int	slots_kb = -1;		/* sealed_cache_kb they were sized for */
static uint64 slots_epoch = 0;	/* tde_keys_epoch() they were filled under */
static OpenedSlot recent[RECENT_SLOTS] pg_attribute_aligned(64);
static uint32 seen[SEEN_SLOTS];

#define IMAGE_OFFSET(stored_len)	MAXALIGN(stored_len)

static void
forget_opened_keys(void)
{
	if (slots != NULL)
	{
		explicit_bzero(slots, (Size) nslots * SLOT_SIZE);
		memset(slot_tags, 0, (Size) nslots * sizeof(uint16));
	}
	explicit_bzero(recent, sizeof(recent));
	memset(seen, 0, sizeof(seen));
}

/* Size the slots by the setting (when it changed). */
static void
size_slots(void)
{
	uint32		want = 0;

	if (sealed_cache_kb > 0)
	{
		want = 1;
		while ((uint64) want * 2 * SLOT_SIZE <= (uint64) sealed_cache_kb * 1024)
			want *= 2;
	}
	slots_kb = sealed_cache_kb;
	if (want == nslots)
		return;
	if (slots != NULL)
	{
		explicit_bzero(slots, (Size) nslots * SLOT_SIZE);
		pfree(slots_alloc);
	}
	slots = NULL;
	slot_tags = NULL;
	slots_alloc = NULL;
	nslots = 0;
	if (want > 0)
	{
		slots_alloc = MemoryContextAllocExtended(TopMemoryContext,
												 (Size) want * (SLOT_SIZE + sizeof(uint16)) + SLOT_SIZE,
												 MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO);
		if (slots_alloc != NULL)
		{
			slots = (OpenedSlot *) TYPEALIGN(SLOT_SIZE, slots_alloc);
			slot_tags = (uint16 *) (slots + want);
			nslots = want;
		}
	}
}

/* Make the cache current: sized by the setting, emptied when relation keys changed. */
static inline void
cache_ready(void)
{
	if (unlikely(slots_kb != sealed_cache_kb))
		size_slots();
	if (unlikely(slots_epoch != tde_keys_epoch()))
	{
		forget_opened_keys();
		slots_epoch = tde_keys_epoch();
	}
}

/*
 * The stored key's nonce, a random number: its first and second words.  The
 * first picks the key's slot, the second its place in recent and seen, and
 * its upper half tags the slot (read first: the tags fit the CPU's caches,
 * the slots need not).
 */
static inline uint32
nonce_word(const uint8 *stored, int n)
{
	uint32		h;

	memcpy(&h, stored + stored_aad_len(stored) + n * sizeof(uint32), sizeof(h));
	return h;
}

static inline uint16
slot_tag(const uint8 *stored)
{
	return (uint16) (nonce_word(stored, 1) >> 16) | 1;
}

static inline bool
slot_holds(const OpenedSlot *slot, const uint8 *stored, Size len)
{
	return slot->stored_len == len && memcmp(slot->data, stored, len) == 0;
}

/* The slot holding the opened image of a stored key, or NULL. */
static const OpenedSlot *
cache_lookup(const uint8 *stored, Size len)
{
	const OpenedSlot *slot;

	if (len > SLOT_DATA)
		return NULL;
	cache_ready();
	slot = &recent[nonce_word(stored, 1) % RECENT_SLOTS];
	if (slot_holds(slot, stored, len))
		return slot;
	if (nslots > 0)
	{
		uint32		i = nonce_word(stored, 0) & (nslots - 1);

		if (slot_tags[i] == slot_tag(stored) && slot_holds(&slots[i], stored, len))
			return &slots[i];
	}
	return NULL;
}

static void
fill_slot(OpenedSlot *slot, const uint8 *stored, Size len, const void *image,
		  Size image_len)
{
	Size		old_end = IMAGE_OFFSET(slot->stored_len) + slot->image_len;
	Size		new_end = IMAGE_OFFSET(len) + image_len;

	memcpy(slot->data, stored, len);
	memset(slot->data + len, 0, IMAGE_OFFSET(len) - len);
	memcpy(slot->data + IMAGE_OFFSET(len), image, image_len);
	/* no plaintext of the key held before stays behind */
	if (old_end > new_end)
		explicit_bzero(slot->data + new_end, old_end - new_end);
	slot->stored_len = (uint16) len;
	slot->image_len = (uint16) image_len;
}

/*
 * Keep the image of a stored key: in recent, and in the slots if it was
 * missed before (or always, when just sealed).
 */
static void
cache_store(const uint8 *stored, Size len, const void *image, Size image_len,
			bool sealed)
{
	uint32		w0 = nonce_word(stored, 0);
	uint32		w1 = nonce_word(stored, 1);

	if (IMAGE_OFFSET(len) + image_len > SLOT_DATA)
		return;
	cache_ready();
	fill_slot(&recent[w1 % RECENT_SLOTS], stored, len, image, image_len);
	if (nslots > 0)
	{
		uint32	   *fp = &seen[(w1 / RECENT_SLOTS) % SEEN_SLOTS];

		if (sealed || *fp == (w0 | 1))
		{
			fill_slot(&slots[w0 & (nslots - 1)], stored, len, image, image_len);
			slot_tags[w0 & (nslots - 1)] = slot_tag(stored);
		}
		else
			*fp = w0 | 1;
	}
}

void
sealed_define_settings(void)
{
	DefineCustomBoolVariable("bsoncrypt.index_keys_as_blocks",
							 "Seals short fixed-length encrypted_btree keys as single AES-256 blocks.",
							 "Keys of integer, date, time, timestamp, float, oid and boolean types are stored in 21 bytes instead of 44 to 48; off seals them with AES-256-GCM like every other key.",
							 &sealed_block_keys,
							 true,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("bsoncrypt.index_key_cache",
							"Memory each backend keeps opened encrypted_btree index keys in.",
							"Index lookups compare with keys the cache holds without decrypting them; 0 turns the cache off.",
							&sealed_cache_kb,
							4096, 0, 1024 * 1024,
							PGC_USERSET,
							GUC_UNIT_KB,
							NULL, NULL, NULL);
}

/* ------------------------------------------------------------------------
 * Sealing and opening
 * ------------------------------------------------------------------------
 */
static void
report_corrupt_key(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("could not decrypt an encrypted_btree index key: %s", why),
			 errhint("REINDEX the index to rebuild it from its table.")));
}

static void
put_u32(uint8 *p, uint32 v)
{
	p[0] = (uint8) (v >> 24);
	p[1] = (uint8) (v >> 16);
	p[2] = (uint8) (v >> 8);
	p[3] = (uint8) v;
}

static uint32
get_u32(const uint8 *p)
{
	return ((uint32) p[0] << 24) | ((uint32) p[1] << 16) | ((uint32) p[2] << 8) | p[3];
}

/* A heap TID in 6 bytes (block, offset; big endian), as both formats hold it. */
static void
put_tid(uint8 *p, ItemPointer tid)
{
	OffsetNumber offset = ItemPointerGetOffsetNumberNoCheck(tid);

	put_u32(p, ItemPointerGetBlockNumberNoCheck(tid));
	p[4] = (uint8) (offset >> 8);
	p[5] = (uint8) offset;
}

static void
get_tid(const uint8 *p, ItemPointer tid)
{
	ItemPointerSet(tid, get_u32(p), (OffsetNumber) ((p[4] << 8) | p[5]));
}

/* ------------------------------------------------------------------------
 * Short keys as single AES-256 blocks (format 0xE9, tde_index.h)
 *
 * A value of a byval type with a type code (integers, dates, times,
 * timestamps, floats, oids, booleans: at most 8 bytes) and the heap TID of
 * its entry fit one 16-byte block with room to spare.  Such keys are stored
 * as that block enciphered with AES-256 (no mode), encode-then-encipher
 * (M. Bellare and P. Rogaway, "Encode-Then-Encipher Encryption: How to
 * Exploit Nonces or Redundancy in Plaintexts for Efficient Cryptography",
 * ASIACRYPT 2000): AES is a pseudorandom permutation, so
 * - the TID makes every live entry's block unique, and ciphertexts say
 *   nothing of the values (only that one entry was copied, as btree does
 *   into pivots, or that a value came back to the same TID);
 * - a changed ciphertext, or one opened under another key, deciphers to a
 *   random block, which passes the checks below with probability 2^-49 for
 *   4-byte values and about 2^-17 for 8-byte ones; an entry btree returns
 *   also has its TID checked (check_entry), 43 bits more.
 * Opening one costs an AES decryption (some 30 instructions with AES-NI),
 * less than looking it up in the cache of opened keys, so these bypass it;
 * and the index is smaller: an int4 entry takes 36 bytes with its line
 * pointer instead of 60 (btree: 20).
 *
 * The block: the value's bytes (as a Datum stores them, zero-padded to 8),
 * the TID's block number (4 bytes, big endian) and offset (2 bytes, at
 * most BLOCK_MAX_OFFSET), the type code, and the format byte again.
 * ------------------------------------------------------------------------
 */
#define BLOCK_SIZE			16
#define BLOCK_VALUE_MAX		8
#define BLOCK_TID			8
#define BLOCK_TYPE			14
#define BLOCK_CHECK			15
#define BLOCK_MAX_OFFSET	0x07FF	/* MaxOffsetNumber for 8 kB pages, less one */

/*
 * The length of the values of each type code that can be a block (0: none
 * can): the byval built-ins, whose lengths are fixed.  Opening a block
 * needs no catalog lookup.
 */
#if FLOAT8PASSBYVAL
#define BYVAL_8		8
#else
#define BYVAL_8		0			/* 8-byte types are passed by reference */
#endif
static const uint8 block_value_len[lengthof(type_codes)] = {
	[1] = sizeof(int16),		/* int2 */
	[2] = sizeof(int32),		/* int4 */
	[3] = BYVAL_8,				/* int8 */
	[9] = BYVAL_8,				/* timestamptz */
	[10] = BYVAL_8,				/* timestamp */
	[11] = sizeof(int32),		/* date */
	[13] = sizeof(float4),		/* float4 */
	[14] = BYVAL_8,				/* float8 */
	[15] = sizeof(Oid),			/* oid */
	[16] = sizeof(bool),		/* bool */
	[18] = BYVAL_8,				/* time */
};

static inline bool
fits_block(uint8 code, ItemPointer tid)
{
	return sealed_block_keys && block_value_len[code] != 0 &&
		ItemPointerGetOffsetNumberNoCheck(tid) <= BLOCK_MAX_OFFSET;
}

static struct varlena *
seal_block(Relation index, const TypeFacts *facts, uint8 code, Datum value,
		   ItemPointer tid)
{
	TdeKey	   *key = tde_key_for_write(index);
	struct varlena *result = palloc(VARHDRSZ + SEALED_BLOCK_LEN);
	uint8	   *p = (uint8 *) VARDATA(result);
	uint8		block[BLOCK_SIZE] pg_attribute_aligned(8) = {0};

	if (facts->typlen != block_value_len[code] || !facts->typbyval)
		elog(ERROR, "type %u is not of the length its code says", facts->typid);
	store_att_byval(block, value, facts->typlen);
	put_tid(block + BLOCK_TID, tid);
	block[BLOCK_TYPE] = code;
	block[BLOCK_CHECK] = SEALED_FORMAT_BLOCK;
	SET_VARSIZE(result, VARHDRSZ + SEALED_BLOCK_LEN);
	p[0] = SEALED_FORMAT_BLOCK;
	put_u32(p + 1, (uint32) tde_key_id(key));
	tde_encipher_block(key, block, p + 5);
	return result;
}

/* Are the block's bytes past a value of len bytes zero? */
static pg_attribute_always_inline bool
block_padding_is_zero(const uint8 *block, int len)
{
	uint64		word;

	if (len == BLOCK_VALUE_MAX)
		return true;
	memcpy(&word, block, sizeof(word));
#ifdef WORDS_BIGENDIAN
	return (word << (8 * len)) == 0;
#else
	return (word >> (8 * len)) == 0;
#endif
}

/*
 * Decipher the block of a stored block key (payload p, SEALED_BLOCK_LEN
 * bytes) and check its redundancy: the type code of a block type, the
 * offset's range, the padding, the format byte.  Returns the type code.
 */
static pg_attribute_always_inline uint8
decipher_block(const uint8 *p, uint8 *block)
{
	int32		key_id = (int32) get_u32(p + 1);
	uint8		code;

	if (unlikely(!tde_decipher_block_by_id(key_id, p + 5, block)))
		report_corrupt_key(psprintf("relation key %d does not exist", key_id));
	code = block[BLOCK_TYPE];
	if (unlikely(block[BLOCK_CHECK] != SEALED_FORMAT_BLOCK ||
				 block[BLOCK_TID + 4] > (BLOCK_MAX_OFFSET >> 8) ||
				 code >= lengthof(type_codes) || block_value_len[code] == 0 ||
				 !block_padding_is_zero(block, block_value_len[code])))
		report_corrupt_key(psprintf("authentication with relation key %d failed", key_id));
	return code;
}

/* Decipher a stored block key (payload p, SEALED_BLOCK_LEN bytes) into out. */
static pg_attribute_always_inline void
open_block(const uint8 *p, SealedValue *out)
{
	uint8		block[BLOCK_SIZE] pg_attribute_aligned(8);
	uint8		code = decipher_block(p, block);

	out->stored = true;
	out->key_id = (int32) get_u32(p + 1);
	out->typid = type_codes[code];
	get_tid(block + BLOCK_TID, &out->tid);
	out->value = fetch_att(block, true, block_value_len[code]);
}

/*
 * The bytes a value is sealed as (*data, *len), and whether they are a whole
 * compressed varlena: a fixed-length value's bytes, a varlena's data.
 * Large varlenas are compressed first (ciphertext does not compress).
 */
static bool
plaintext_bytes(const TypeFacts *facts, Datum value, const uint8 **data, Size *len)
{
	if (facts->typlen == -1)
	{
		struct varlena *v = (struct varlena *) DatumGetPointer(value);

		if (VARATT_IS_EXTERNAL(v))
			v = detoast_external_attr(v);
		if (!VARATT_IS_COMPRESSED(v) && VARSIZE_ANY(v) >= SEALED_COMPRESS_MIN)
		{
			Datum		c = toast_compress_datum(PointerGetDatum(v),
												 default_toast_compression);

			if (DatumGetPointer(c) != NULL)
				v = (struct varlena *) DatumGetPointer(c);
		}
		if (VARATT_IS_COMPRESSED(v))
		{
			*data = (const uint8 *) v;
			*len = VARSIZE(v);
			return true;
		}
		*data = (const uint8 *) VARDATA_ANY(v);
		*len = VARSIZE_ANY_EXHDR(v);
		return false;
	}
	if (facts->typbyval)
	{
		uint8	   *buf = palloc(sizeof(Datum));

		store_att_byval(buf, value, facts->typlen);
		*data = buf;
	}
	else
		*data = (const uint8 *) DatumGetPointer(value);
	*len = facts->typlen;
	return false;
}

/*
 * The image an opened value is kept as (in the cache, and what its Datum
 * points at): a varlena with a 4-byte header, or the fixed-length bytes.
 */
static Datum
image_datum(const TypeFacts *facts, void *image)
{
	if (facts->typbyval)
		return fetch_att(image, true, facts->typlen);
	return PointerGetDatum(image);
}

/*
 * Seal one key value of typid for the entry pointing at tid, with the
 * current key of the index's file (its use counted).  Returns a palloc'd
 * varlena in CurrentMemoryContext; its opened image goes to the cache.
 */
struct varlena *
sealed_key_seal(Relation index, Oid typid, Datum value, ItemPointer tid)
{
	const TypeFacts *facts = type_facts_of(typid);
	uint8		code = type_code(typid);
	const uint8 *data;
	Size		len;
	bool		compressed;
	Size		aadlen = code != 0 ? SEALED_AAD_MIN : SEALED_AAD_MAX;
	Size		total;
	TdeKey	   *key;
	struct varlena *result;
	uint8	   *p;
	uint8	   *t;

	if (fits_block(code, tid))
		return seal_block(index, facts, code, value, tid);
	compressed = plaintext_bytes(facts, value, &data, &len);
	total = VARHDRSZ + aadlen + SEALED_NONCE_LEN + len + SEALED_TAG_LEN;
	if (total > BLCKSZ)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("index key of %zu bytes is too large for index \"%s\"",
						len, RelationGetRelationName(index))));
	key = tde_key_for_write(index);
	result = palloc(total);
	SET_VARSIZE(result, total);
	p = (uint8 *) VARDATA(result);
	p[0] = compressed ? SEALED_FORMAT_COMPRESSED : SEALED_FORMAT_STORED;
	put_u32(p + 1, (uint32) tde_key_id(key));
	p[5] = code;
	t = p + 6;
	if (code == 0)
	{
		put_u32(t, typid);
		t += 4;
	}
	put_tid(t, tid);
	Assert(t + 6 == p + aadlen);
	tde_seal(key, p, aadlen, data, len, p + aadlen, p + aadlen + SEALED_NONCE_LEN,
			 p + aadlen + SEALED_NONCE_LEN + len);

	if (!compressed)
	{
		Size		stored_len = total - VARHDRSZ;

		/* the image: a 4-byte-header varlena, or the fixed bytes */
		if (facts->typlen == -1)
		{
			struct varlena *image = palloc(VARHDRSZ + len);

			SET_VARSIZE(image, VARHDRSZ + len);
			memcpy(VARDATA(image), data, len);
			cache_store(p, stored_len, image, VARHDRSZ + len, true);
			pfree(image);
		}
		else
			cache_store(p, stored_len, data, len, true);
	}
	return result;
}

/* Decrypt a stored key (payload p of len bytes, its format checked) into out. */
static void
open_stored(const uint8 *p, Size len, SealedValue *out)
{
	bool		compressed = p[0] == SEALED_FORMAT_COMPRESSED;
	int32		key_id = (int32) get_u32(p + 1);
	Size		aadlen = stored_aad_len(p);
	const uint8 *t = p + 6;
	const uint8 *nonce = p + aadlen;
	const uint8 *ct = nonce + SEALED_NONCE_LEN;
	Size		ctlen;
	const TypeFacts *facts;
	const OpenedSlot *slot;
	Datum		byval;
	void	   *image;
	TdeKey	   *key;

	if (len < aadlen + SEALED_NONCE_LEN + SEALED_TAG_LEN ||
		p[5] >= lengthof(type_codes))
		report_corrupt_key("the stored key has an invalid header");
	ctlen = len - aadlen - SEALED_NONCE_LEN - SEALED_TAG_LEN;
	out->stored = true;
	out->key_id = key_id;
	if (p[5] != 0)
		out->typid = type_codes[p[5]];
	else
	{
		out->typid = get_u32(t);
		t += 4;
	}
	get_tid(t, &out->tid);
	facts = type_facts_of(out->typid);

	slot = cache_lookup(p, len);
	if (slot != NULL)
	{
		const uint8 *cached = slot->data + IMAGE_OFFSET(len);

		if (facts->typbyval)
			out->value = fetch_att(memcpy(&byval, cached, slot->image_len), true,
								   facts->typlen);
		else
			out->value = PointerGetDatum(memcpy(palloc(Max(slot->image_len, sizeof(Datum))),
												cached, slot->image_len));
		return;
	}

	key = tde_key_by_id(key_id);
	if (key == NULL)
		report_corrupt_key(psprintf("relation key %d does not exist", key_id));
	if (!compressed && facts->typlen > 0 && ctlen != (Size) facts->typlen)
		report_corrupt_key("the stored key has an invalid header");

	if (compressed)
	{
		struct varlena *whole = palloc(Max(ctlen, VARHDRSZ));

		if (!tde_open(key, p, aadlen, nonce, ct, ctlen, ct + ctlen, (uint8 *) whole))
			report_corrupt_key(psprintf("authentication with relation key %d failed", key_id));
		if (facts->typlen != -1 || !VARATT_IS_COMPRESSED(whole) || VARSIZE_ANY(whole) != ctlen)
			report_corrupt_key("the decrypted key has an invalid length");
		out->value = PointerGetDatum(detoast_attr(whole));
		return;
	}
	if (facts->typlen == -1)
	{
		struct varlena *v = palloc(VARHDRSZ + ctlen);

		SET_VARSIZE(v, VARHDRSZ + ctlen);
		if (!tde_open(key, p, aadlen, nonce, ct, ctlen, ct + ctlen, (uint8 *) VARDATA(v)))
			report_corrupt_key(psprintf("authentication with relation key %d failed", key_id));
		cache_store(p, len, v, VARHDRSZ + ctlen, false);
		out->value = PointerGetDatum(v);
		return;
	}
	image = facts->typbyval ? (void *) &byval : palloc(Max(ctlen, sizeof(Datum)));
	if (!tde_open(key, p, aadlen, nonce, ct, ctlen, ct + ctlen, image))
		report_corrupt_key(psprintf("authentication with relation key %d failed", key_id));
	cache_store(p, len, image, ctlen, false);
	out->value = image_datum(facts, image);
}

/* Point out at the plaintext of a probe (payload p of len bytes). */
static pg_attribute_always_inline void
open_probe(const uint8 *p, Size len, SealedValue *out)
{
	const TypeFacts *facts;
	const char *image = (const char *) p + PROBE_IMAGE;
	Size		image_len = len - PROBE_IMAGE;

	memcpy(&out->typid, p + PROBE_TYPE, sizeof(Oid));
	facts = type_facts_of(out->typid);
	out->stored = false;
	out->key_id = 0;
	ItemPointerSetInvalid(&out->tid);
	if (p[PROBE_FLAGS] == PROBE_DATUM)
	{
		if (!facts->typbyval || image_len != sizeof(Datum))
			report_corrupt_key("the probe has an invalid length");
		memcpy(&out->value, image, sizeof(Datum));
		return;
	}
	if (facts->typbyval)
		report_corrupt_key("the probe has an invalid length");
	/* a probe packed into an index tuple or an array may be unaligned */
	if (unlikely((uintptr_t) image != MAXALIGN((uintptr_t) image)))
	{
		char	   *copy = palloc(Max(image_len, sizeof(Datum)));

		memcpy(copy, image, image_len);
		image = copy;
	}
	if ((facts->typlen > 0 && image_len != (Size) facts->typlen) ||
		(facts->typlen == -1 && (image_len < VARHDRSZ || VARATT_IS_EXTENDED(image) ||
								 VARSIZE(image) != image_len)))
		report_corrupt_key("the probe has an invalid length");
	out->value = image_datum(facts, (void *) image);
}

/*
 * Open a block key or a probe of a byval type, the keys of most lookups,
 * into out's type and value only (what comparisons use), without memory
 * or lookups; false for others (open_sealed opens them).
 */
static pg_attribute_always_inline bool
open_quick(Datum datum, SealedValue *out)
{
	const uint8 *v = (const uint8 *) DatumGetPointer(datum);
	const uint8 *p;
	Size		len;

	if (VARATT_IS_1B(v) && !VARATT_IS_1B_E(v))
	{
		p = v + VARHDRSZ_SHORT;
		len = VARSIZE_1B(v) - VARHDRSZ_SHORT;
	}
	else if (VARATT_IS_4B_U(v))
	{
		p = v + VARHDRSZ;
		len = VARSIZE_4B(v) - VARHDRSZ;
	}
	else
		return false;
	if (len == SEALED_BLOCK_LEN && p[0] == SEALED_FORMAT_BLOCK)
	{
		uint8		block[BLOCK_SIZE] pg_attribute_aligned(8);
		uint8		code = decipher_block(p, block);

		out->typid = type_codes[code];
		out->value = fetch_att(block, true, block_value_len[code]);
		return true;
	}
	if (len == PROBE_IMAGE + sizeof(Datum) && p[0] == SEALED_FORMAT_PROBE &&
		p[PROBE_FLAGS] == PROBE_DATUM && p[PROBE_CODE] != 0 &&
		p[PROBE_CODE] < lengthof(type_codes) && block_value_len[p[PROBE_CODE]] != 0)
	{
		out->typid = type_codes[p[PROBE_CODE]];
		memcpy(&out->value, p + PROBE_IMAGE, sizeof(Datum));
		return true;
	}
	return false;
}

/*
 * Open a sealed key: decrypt a stored one (plaintext palloc'd in
 * CurrentMemoryContext), or point into a probe.  Inlined into the
 * comparison functions, which run it twice per call, twenty calls per
 * lookup.
 */
static pg_attribute_always_inline void
open_sealed(Datum datum, SealedValue *out)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(datum);
	const uint8 *p;
	Size		len;

	if (unlikely(VARATT_IS_EXTENDED(v) && !VARATT_IS_SHORT(v)))
		v = detoast_attr(v);	/* compressed by index_form_tuple (large keys) */
	p = (const uint8 *) VARDATA_ANY(v);
	len = VARSIZE_ANY_EXHDR(v);
	if (len == SEALED_BLOCK_LEN && p[0] == SEALED_FORMAT_BLOCK)
		open_block(p, out);
	else if (len >= SEALED_OVERHEAD_MIN &&
		(p[0] == SEALED_FORMAT_STORED || p[0] == SEALED_FORMAT_COMPRESSED))
		open_stored(p, len, out);
	else if (len >= PROBE_IMAGE && p[0] == SEALED_FORMAT_PROBE)
		open_probe(p, len, out);
	else
		report_corrupt_key("the value is not a sealed key");
}

void
sealed_key_open(Datum datum, SealedValue *out)
{
	open_sealed(datum, out);
}

/*
 * A probe of a plaintext value of typid, in CurrentMemoryContext: what
 * scans compare stored keys with.
 */
Datum
sealed_key_probe(Oid typid, Datum value)
{
	const TypeFacts *facts = type_facts_of(typid);
	Size		len;
	char	   *probe;
	uint8		code;

	if (facts->typlen == -1)
	{
		struct varlena *v = PG_DETOAST_DATUM(value);

		len = VARSIZE(v);
		probe = palloc0(PROBE_HEADER + len);
		memcpy(probe + PROBE_HEADER, v, len);
	}
	else if (facts->typbyval)
	{
		len = sizeof(Datum);
		probe = palloc0(PROBE_HEADER + len);
		memcpy(probe + PROBE_HEADER, &value, sizeof(Datum));
		probe[VARHDRSZ + PROBE_FLAGS] = PROBE_DATUM;
		code = type_code(typid);
		probe[VARHDRSZ + PROBE_CODE] = block_value_len[code] != 0 ? code : 0;
	}
	else
	{
		len = facts->typlen;
		probe = palloc0(PROBE_HEADER + len);
		memcpy(probe + PROBE_HEADER, DatumGetPointer(value), len);
	}
	SET_VARSIZE(probe, PROBE_HEADER + len);
	probe[VARHDRSZ] = (char) SEALED_FORMAT_PROBE;
	memcpy(probe + VARHDRSZ + PROBE_TYPE, &typid, sizeof(Oid));
	return PointerGetDatum(probe);
}

/* An array of elemtype values as an array of probes (nulls kept). */
Datum
sealed_key_probe_array(Oid elemtype, Datum array, Oid sealed_type)
{
	ArrayType  *arr = DatumGetArrayTypeP(array);
	const TypeFacts *facts = type_facts_of(elemtype);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			dims[1];
	int			lbs[1] = {1};

	deconstruct_array(arr, elemtype, facts->typlen, facts->typbyval, facts->typalign,
					  &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			elems[i] = sealed_key_probe(elemtype, elems[i]);
	dims[0] = n;
	return PointerGetDatum(construct_md_array(elems, nulls, n > 0 ? 1 : 0, dims, lbs,
											  sealed_type, -1, false, TYPALIGN_INT));
}

#define COMPARE_INTEGERS(x, y) ((x) < (y) ? -1 : (x) > (y) ? 1 : 0)

/*
 * btree's comparison of two opened keys.  Values of the same integer-like
 * type compare here, as their btree comparison functions do (btint2cmp,
 * btint4cmp, btint8cmp, btoidcmp, date_cmp, timestamp_cmp, time_cmp):
 * that saves a function call at each of the twenty comparisons of a
 * lookup.  Others call the comparison of their types' btree family.
 */
static pg_attribute_always_inline bool
compare_integer_like(const SealedValue *a, const SealedValue *b, int *result)
{
	if (a->typid != b->typid)
		return false;
	switch (a->typid)
	{
		case INT2OID:
			*result = COMPARE_INTEGERS(DatumGetInt16(a->value), DatumGetInt16(b->value));
			return true;
		case INT4OID:
		case DATEOID:
			*result = COMPARE_INTEGERS(DatumGetInt32(a->value), DatumGetInt32(b->value));
			return true;
		case INT8OID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case TIMEOID:
			*result = COMPARE_INTEGERS(DatumGetInt64(a->value), DatumGetInt64(b->value));
			return true;
		case OIDOID:
			*result = COMPARE_INTEGERS(DatumGetObjectId(a->value), DatumGetObjectId(b->value));
			return true;
		default:
			return false;
	}
}

/* ... and of any two: the btree comparison function of their types */
static int
compare_by_function(const SealedValue *a, const SealedValue *b, Oid collation)
{
	return DatumGetInt32(FunctionCall2Coll(cmp_proc_of(a->typid, b->typid),
										   collation, a->value, b->value));
}

int
sealed_key_compare(const SealedValue *a, const SealedValue *b, Oid collation)
{
	int			result;

	if (compare_integer_like(a, b, &result))
		return result;
	return compare_by_function(a, b, collation);
}

/* ------------------------------------------------------------------------
 * SQL-callable: type I/O, support function 1, operators
 * ------------------------------------------------------------------------
 */
static MemoryContext scratch = NULL;

/*
 * Enter the scratch context, emptied first: nothing made by an earlier
 * comparison is still referenced (comparisons do not nest: the btree
 * comparisons they call never compare sealed keys).
 */
static inline MemoryContext
enter_scratch(void)
{
	if (unlikely(scratch == NULL))
		scratch = AllocSetContextCreate(TopMemoryContext, "bsoncrypt sealed keys",
										ALLOCSET_SMALL_SIZES);
	else if (!scratch->isReset)
		MemoryContextReset(scratch);
	return MemoryContextSwitchTo(scratch);
}

/*
 * Open the two sealed-key arguments of fcinfo: quickly if they are short
 * (then *old is NULL), else in the scratch context (*old is the context to
 * return to).
 */
static pg_attribute_always_inline void
open_args(FunctionCallInfo fcinfo, SealedValue *a, SealedValue *b, MemoryContext *old)
{
	bool		quick_a = open_quick(PG_GETARG_DATUM(0), a);

	if (likely(quick_a && open_quick(PG_GETARG_DATUM(1), b)))
	{
		*old = NULL;
		return;
	}
	*old = enter_scratch();
	if (!quick_a)
		open_sealed(PG_GETARG_DATUM(0), a);
	open_sealed(PG_GETARG_DATUM(1), b);
}

/* compare the two sealed-key arguments of fcinfo */
static pg_attribute_always_inline int
compare_args(FunctionCallInfo fcinfo)
{
	SealedValue a,
				b;
	MemoryContext old;
	int			result;

	open_args(fcinfo, &a, &b, &old);
	if (!compare_integer_like(&a, &b, &result))
	{
		if (old == NULL)
			old = enter_scratch();	/* a comparison function may allocate */
		result = compare_by_function(&a, &b, PG_GET_COLLATION());
	}
	if (old != NULL)
		MemoryContextSwitchTo(old);
	return result;
}

Datum
bsoncrypt_sealed_key_cmp(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(compare_args(fcinfo));
}

Datum
bsoncrypt_sealed_key_lt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) < 0);
}

Datum
bsoncrypt_sealed_key_le(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) <= 0);
}

Datum
bsoncrypt_sealed_key_eq(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) == 0);
}

Datum
bsoncrypt_sealed_key_ge(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) >= 0);
}

Datum
bsoncrypt_sealed_key_gt(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(compare_args(fcinfo) > 0);
}

/*
 * A scan key's operator, applied to a stored key (or probe) and a probe:
 * both opened, then the operator the planner chose runs on the plaintexts.
 * fn_extra holds that operator.
 */
static Datum
wrapped_operator(PG_FUNCTION_ARGS)
{
	FmgrInfo   *orig = (FmgrInfo *) fcinfo->flinfo->fn_extra;
	SealedValue a,
				b;
	MemoryContext old;
	Datum		result;

	open_args(fcinfo, &a, &b, &old);
	if (old == NULL)
		old = enter_scratch();	/* the operator may allocate */
	result = FunctionCall2Coll(orig, PG_GET_COLLATION(), a.value, b.value);
	MemoryContextSwitchTo(old);
	return result;
}

/*
 * Make a scan key's operator (flinfo) take sealed keys: the original is
 * kept (in cxt) and called on the opened values.
 */
void
sealed_key_wrap_operator(FmgrInfo *flinfo, MemoryContext cxt)
{
	FmgrInfo   *orig = MemoryContextAlloc(cxt, sizeof(FmgrInfo));

	fmgr_info_copy(orig, flinfo, cxt);
	flinfo->fn_addr = wrapped_operator;
	flinfo->fn_oid = InvalidOid;	/* never looked up again by oid */
	flinfo->fn_extra = orig;
	flinfo->fn_strict = true;
	flinfo->fn_mcxt = cxt;
}

Datum
bsoncrypt_sealed_key_in(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("values of type %s are made by encrypted_btree indexes only",
					"bsoncrypt.sealed_key")));
	PG_RETURN_NULL();
}

/*
 * The plaintext in its type's text form: what a unique violation's detail
 * shows (btree describes the entry it was inserting).
 */
Datum
bsoncrypt_sealed_key_out(PG_FUNCTION_ARGS)
{
	SealedValue v;
	Oid			typoutput;
	bool		typisvarlena;

	sealed_key_open(PG_GETARG_DATUM(0), &v);
	getTypeOutputInfo(v.typid, &typoutput, &typisvarlena);
	PG_RETURN_CSTRING(OidOutputFunctionCall(typoutput, v.value));
}
