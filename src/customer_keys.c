/*-------------------------------------------------------------------------
 *
 * customer_keys.c
 *	  The keys clients supply for the "customer" provider (customer-held
 *	  master keys, like S3's SSE-C), and the SQL functions that supply,
 *	  clear and list them.
 *
 *	  A supplied key lives in this backend only, for the rest of the
 *	  transaction: it is zeroed at commit, abort, PREPARE TRANSACTION,
 *	  clear_customer_key() and backend exit, and the data keys it
 *	  unwrapped leave the key cache at the same moment.  It is never in
 *	  shared memory, never written, never in a message.  The store is one
 *	  anonymous mapping of its own, excluded from core dumps
 *	  (MADV_DONTDUMP) and locked in RAM when RLIMIT_MEMLOCK allows it
 *	  (mlock), so that it is not swapped out.
 *
 *	  customer_key_event() is the one place where a key is supplied or
 *	  cleared (by name): the audit trail hooks in there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/mman.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "access/parallel.h"
#include "access/xact.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"

#include "customer_keys.h"
#include "key_audit.h"
#include "kms.h"

PG_FUNCTION_INFO_V1(bsoncrypt_supply_customer_key);
PG_FUNCTION_INFO_V1(bsoncrypt_clear_customer_key);
PG_FUNCTION_INFO_V1(bsoncrypt_supplied_customer_keys);

#define CUSTOMER_KEY_SLOTS 16
#define KEY_CHECK_LABEL "bsoncrypt customer key check value v1"

typedef struct CustomerKeySlot
{
	bool		in_use;
	char		name[KMS_VERSION_NAME_MAX + 1];
	uint8_t		key[FLE_KEY_LEN];
} CustomerKeySlot;

typedef enum CustomerKeyEvent
{
	CUSTOMER_KEY_SUPPLIED,
	CUSTOMER_KEY_REPLACED,
	CUSTOMER_KEY_CLEARED,		/* by clear_customer_key() */
	CUSTOMER_KEY_EXPIRED		/* at the end of its transaction or session */
} CustomerKeyEvent;

static CustomerKeySlot *slots = NULL;	/* CUSTOMER_KEY_SLOTS, own mapping */
static size_t slots_size = 0;
static int	slots_used = 0;
static bool callbacks_registered = false;

/*
 * Every supply and clear of a customer key passes here, with the key's
 * name only.  The audit trail (issue 13, part 3) records these events.
 */
static void
customer_key_event(CustomerKeyEvent event, const char *name)
{
	static const char *const what[] = {"supplied", "replaced", "cleared", "expired"};

	elog(DEBUG1, "bsoncrypt: customer key \"%s\" %s", name, what[event]);
	if (event == CUSTOMER_KEY_SUPPLIED || event == CUSTOMER_KEY_REPLACED)
		key_audit_customer_key_supplied(name);
}

/* Zero every key; expired names their end to customer_key_event. */
static void
clear_all_keys(void)
{
	key_cache_forget_customer_keys();
	if (slots == NULL || slots_used == 0)
		return;
	for (int i = 0; i < CUSTOMER_KEY_SLOTS; i++)
		if (slots[i].in_use)
			customer_key_event(CUSTOMER_KEY_EXPIRED, slots[i].name);
	explicit_bzero(slots, slots_size);
	slots_used = 0;
}

static void
customer_keys_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			clear_all_keys();
			break;
		default:
			break;
	}
}

static void
customer_keys_exit(int code, Datum arg)
{
	if (slots != NULL)
		explicit_bzero(slots, slots_size);
	slots_used = 0;
}

/*
 * The store: a mapping of its own, so that it can be kept out of core
 * dumps and swap without affecting anything else.
 */
static void
store_init(void)
{
	long		page = sysconf(_SC_PAGESIZE);
	void	   *mem;

	if (!callbacks_registered)
	{
		RegisterXactCallback(customer_keys_xact_callback, NULL);
		on_proc_exit(customer_keys_exit, (Datum) 0);
		callbacks_registered = true;
	}
	if (slots != NULL)
		return;
	if (page <= 0)
		page = 4096;
	slots_size = TYPEALIGN(page, sizeof(CustomerKeySlot) * CUSTOMER_KEY_SLOTS);
	mem = mmap(NULL, slots_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("could not map memory for customer keys: %m")));
#ifdef MADV_DONTDUMP
	if (madvise(mem, slots_size, MADV_DONTDUMP) != 0)
	{
		int			save_errno = errno;

		munmap(mem, slots_size);
		errno = save_errno;
		ereport(ERROR,
				(errcode(ERRCODE_SYSTEM_ERROR),
				 errmsg("could not exclude customer keys from core dumps: %m")));
	}
#endif
	if (mlock(mem, slots_size) != 0)
		elog(DEBUG1, "bsoncrypt: customer keys are not locked in memory: %m");
	slots = mem;
}

void
customer_key_check_value(const uint8_t key[FLE_KEY_LEN],
						 uint8_t check[CUSTOMER_KEY_CHECK_LEN])
{
	uint8_t		mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (HMAC(EVP_sha256(), key, FLE_KEY_LEN, (const unsigned char *) KEY_CHECK_LABEL,
			 strlen(KEY_CHECK_LABEL), mac, &mac_len) == NULL || mac_len < CUSTOMER_KEY_CHECK_LEN)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a customer key check value")));
	memcpy(check, mac, CUSTOMER_KEY_CHECK_LEN);
	explicit_bzero(mac, sizeof(mac));
}

/*
 * Can this process hold customer keys?  A client's own backend only:
 * background workers (the rotation worker) and parallel workers never do.
 */
bool
customer_key_usable_here(void)
{
	return !IsBackgroundWorker && !IsParallelWorker() && MyBackendType == B_BACKEND;
}

static CustomerKeySlot *
find_slot(const char *name)
{
	if (slots == NULL || slots_used == 0)
		return NULL;
	for (int i = 0; i < CUSTOMER_KEY_SLOTS; i++)
		if (slots[i].in_use && strcmp(slots[i].name, name) == 0)
			return &slots[i];
	return NULL;
}

/* Copy the key supplied as name into key; false if there is none. */
bool
customer_key_copy(const char *name, uint8_t key[FLE_KEY_LEN])
{
	CustomerKeySlot *slot = find_slot(name);

	if (slot == NULL)
		return false;
	memcpy(key, slot->key, FLE_KEY_LEN);
	return true;
}

bool
customer_keys_supplied_any(void)
{
	return slots_used > 0;
}

List *
customer_key_names(void)
{
	List	   *names = NIL;

	if (slots == NULL)
		return NIL;
	for (int i = 0; i < CUSTOMER_KEY_SLOTS; i++)
		if (slots[i].in_use)
			names = lappend(names, pstrdup(slots[i].name));
	return names;
}

static void
check_key_name(const char *name)
{
	if (!kms_valid_version_name(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid customer key name \"%s\"", name),
				 errhint("Names use letters, digits, '.', '_' and '-', start with a letter or digit, and are at most %d characters.",
						 KMS_VERSION_NAME_MAX)));
}

/* Keep key (FLE_KEY_LEN bytes) as name for the rest of the transaction. */
static void
store_key(const char *name, const uint8_t *key)
{
	CustomerKeySlot *slot;
	bool		replaced;

	store_init();
	slot = find_slot(name);
	replaced = (slot != NULL);
	if (slot == NULL)
	{
		for (int i = 0; i < CUSTOMER_KEY_SLOTS && slot == NULL; i++)
			if (!slots[i].in_use)
				slot = &slots[i];
		if (slot == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("at most %d customer keys can be supplied in one transaction",
							CUSTOMER_KEY_SLOTS),
					 errhint("Clear keys no longer needed with bsoncrypt.clear_customer_key(name).")));
		slot->in_use = true;
		strlcpy(slot->name, name, sizeof(slot->name));
		slots_used++;
	}
	memcpy(slot->key, key, FLE_KEY_LEN);
	/* a replaced key must not keep serving what the old one unwrapped */
	if (replaced)
		key_cache_forget_customer_keys();
	customer_key_event(replaced ? CUSTOMER_KEY_REPLACED : CUSTOMER_KEY_SUPPLIED, name);
}

/*
 * supply_customer_key(name text, key bytea) -> void
 *
 * The key must be a bind parameter of a statement that calls this
 * function directly (customer_key_guard.c checks, and keeps the statement's
 * parameters out of the log).  The argument's bytes are zeroed after they
 * are copied into the store.
 */
Datum
bsoncrypt_supply_customer_key(PG_FUNCTION_ARGS)
{
	char	   *name;
	bytea	   *key;
	size_t		len;

	if (!customer_key_usable_here())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("customer keys can only be supplied in a client's session")));
	if (!IsTransactionBlock())
		ereport(ERROR,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("bsoncrypt.supply_customer_key can only be used in a transaction block"),
				 errhint("The key is kept until the transaction ends: BEGIN first, then supply it, use it, and COMMIT or ROLLBACK.")));
	customer_key_guard_check_call(fcinfo, 1);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("customer key name and key must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_key_name(name);
	key = PG_GETARG_BYTEA_PP(1);
	len = VARSIZE_ANY_EXHDR(key);
	if (len != FLE_KEY_LEN)
	{
		explicit_bzero(VARDATA_ANY(key), len);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("customer key \"%s\" must be %d bytes, not %zu", name, FLE_KEY_LEN, len),
				 errhint("Make one with: head -c %d /dev/urandom", FLE_KEY_LEN)));
	}
	PG_TRY();
	{
		store_key(name, (const uint8_t *) VARDATA_ANY(key));
	}
	PG_FINALLY();
	{
		explicit_bzero(VARDATA_ANY(key), len);
	}
	PG_END_TRY();
	PG_RETURN_VOID();
}

/* clear_customer_key(name text) -> boolean: was it supplied? */
Datum
bsoncrypt_clear_customer_key(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	CustomerKeySlot *slot = find_slot(name);

	if (slot == NULL)
		PG_RETURN_BOOL(false);
	customer_key_event(CUSTOMER_KEY_CLEARED, slot->name);
	explicit_bzero(slot, sizeof(*slot));
	slots_used--;
	key_cache_forget_customer_keys();
	PG_RETURN_BOOL(true);
}

/* supplied_customer_keys() -> SETOF text: names of the keys supplied now */
Datum
bsoncrypt_supplied_customer_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, MAT_SRF_USE_EXPECTED_DESC);
	foreach(lc, customer_key_names())
	{
		Datum		value = CStringGetTextDatum((char *) lfirst(lc));
		bool		isnull = false;

		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, &value, &isnull);
	}
	return (Datum) 0;
}
