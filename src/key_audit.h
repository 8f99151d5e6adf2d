/*-------------------------------------------------------------------------
 *
 * key_audit.h
 *	  The audit trail of key use: events recorded in bsoncrypt.key_audit
 *	  (key_audit.c) and, for events of transactions that may roll back,
 *	  through a shared-memory queue drained by a background worker
 *	  (key_audit_queue.c).
 *
 *	  Recording an event is one call:
 *
 *		KeyAuditEvent ev = {.kind = KEY_AUDIT_CUSTOMER_KEY_SUPPLIED,
 *							.provider = "customer", .key_alt_name = name};
 *		key_audit_event(&ev);
 *
 *	  or, for a customer-held key, key_audit_customer_key_supplied(name).
 *	  Never pass key bytes: every field ends up in a table and in the
 *	  server log.
 *
 *-------------------------------------------------------------------------
 */
#ifndef BSONCRYPT_KEY_AUDIT_H
#define BSONCRYPT_KEY_AUDIT_H

#include "postgres.h"

#include "utils/elog.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

typedef enum KeyAuditKind
{
	/* changes of bsoncrypt.key_vault: same transaction as the change */
	KEY_AUDIT_DATA_KEY_CREATED,
	KEY_AUDIT_DATA_KEY_IMPORTED,
	KEY_AUDIT_DATA_KEY_DELETED,
	KEY_AUDIT_DATA_KEY_ALT_NAMES_CHANGED,
	KEY_AUDIT_DATA_KEY_REWRAPPED,
	KEY_AUDIT_DATA_KEY_STATUS_CHANGED,
	KEY_AUDIT_KEY_VAULT_TRUNCATED,
	KEY_AUDIT_TABLE_KEY_CREATED,
	KEY_AUDIT_TABLE_KEY_DELETED,
	KEY_AUDIT_TABLE_KEY_REWRAPPED,
	/* rotation: same transaction as the rotation_state change */
	KEY_AUDIT_ROTATION_STARTED,
	KEY_AUDIT_ROTATION_FINISHED,
	KEY_AUDIT_ROTATION_FAILED,
	/* the audit trail itself */
	KEY_AUDIT_PURGED,
	/* durable: recorded even if the transaction rolls back */
	KEY_AUDIT_DATA_KEY_UNWRAPPED,	/* counted per key and period */
	KEY_AUDIT_TABLE_KEY_UNWRAPPED,	/* counted per key and period */
	KEY_AUDIT_UNWRAP_FAILED,
	KEY_AUDIT_PROVIDER_ERROR,
	KEY_AUDIT_CUSTOMER_KEY_SUPPLIED,
	KEY_AUDIT_EVENTS_LOST,
	KEY_AUDIT_NKINDS
} KeyAuditKind;

/* What happened; NULL/0 fields are not known or do not apply. */
typedef struct KeyAuditEvent
{
	KeyAuditKind kind;
	const pg_uuid_t *key_id;	/* data key */
	const char *key_alt_name;	/* a keyAltName (or a customer key's name) */
	const char *provider;
	const char *master_key_version;
	Oid			relid;			/* table key: its relation */
	const char *relation;		/* or the relation's name when relid is unknown */
	const char *detail;			/* a JSON object, or NULL */
	int64		count;			/* 0 means 1 */
	int			sqlerrcode;		/* 0: the event succeeded */
	const char *message;		/* the error's message, without secrets */
} KeyAuditEvent;

/* settings */
extern bool key_audit_enabled;
extern bool key_audit_log;

extern void key_audit_define_settings(void);
extern void key_audit_queue_init(void);

/*
 * Record an event.  Changes (created, deleted, rewrapped, rotation...)
 * are inserted in the current transaction, so they commit or roll back
 * with the change; failures, unwrap counts and customer keys supplied are
 * queued and survive a rollback.
 */
extern void key_audit_event(const KeyAuditEvent *ev);

/* the same, for a failure being handled in PG_CATCH (the error is kept) */
extern void key_audit_error(KeyAuditEvent *ev);

/* count one unwrap of a key; a row per key and period is written */
extern void key_audit_count_unwrap(const KeyAuditEvent *ev);

/* a customer-held master key was supplied (by name; never the key) */
extern void key_audit_customer_key_supplied(const char *name);

/* _new_key_material made this wrapped material: its INSERT is a create */
extern void key_audit_note_new_material(const bytea *material);

extern const char *key_audit_kind_name(KeyAuditKind kind);

/*
 * A fully described event, in a fixed-size form that fits in shared
 * memory (key_audit_queue.c) and is written to the table and the log.
 */
#define KEY_AUDIT_TEXT_MAX 256
#define KEY_AUDIT_MESSAGE_MAX 512
typedef struct KeyAuditRecord
{
	Oid			dboid;
	KeyAuditKind kind;
	TimestampTz event_time;
	TimestampTz last_time;		/* counted events: the last one */
	int64		count;
	bool		has_key_id;
	pg_uuid_t	key_id;
	int			sqlerrcode;
	char		key_alt_name[KEY_AUDIT_TEXT_MAX];
	char		provider[NAMEDATALEN];
	char		master_key_version[KEY_AUDIT_TEXT_MAX];
	char		relation[2 * NAMEDATALEN + 8];
	char		detail[KEY_AUDIT_TEXT_MAX];
	char		message[KEY_AUDIT_MESSAGE_MAX];
	/* who */
	char		session_role[NAMEDATALEN];
	char		effective_role[NAMEDATALEN];
	int			backend_pid;
	char		session_id[32];
	char		client_addr[64];
	char		application_name[NAMEDATALEN];
} KeyAuditRecord;

/* key_audit.c, for key_audit_queue.c */
extern void key_audit_insert_record(const KeyAuditRecord *rec);
extern void key_audit_log_record(const KeyAuditRecord *rec);

/* key_audit_queue.c */
extern bool key_audit_enqueue(const KeyAuditRecord *rec);
extern bool key_audit_queue_available(void);

#endif							/* BSONCRYPT_KEY_AUDIT_H */
