/*-------------------------------------------------------------------------
 *
 * kms_local.c
 *	  The "local" master-key provider: a key ring in the file named by the
 *	  superuser-only setting bsoncrypt.local_master_key_file.
 *
 *	  File format: one master key per line, "<version> <base64 of 96 bytes>";
 *	  a file holding a single key may give just the base64 (version
 *	  "default", MongoDB's local key as is).  Blank lines and lines starting
 *	  with # are ignored.  The LAST key listed is the current version, used
 *	  for new wraps; the others stay available for unwrapping.  The file is
 *	  re-read on every use, so a reload (or just editing it) takes effect
 *	  without a restart; like PostgreSQL's ssl_key_file it must not be
 *	  accessible by group or others.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <unistd.h>

#include "storage/fd.h"

#include "kms.h"

#define LOCAL_DEFAULT_VERSION "default"
#define KEY_LINE_MAX 1024		/* longer lines are malformed */

/*
 * The file's path is a superuser-only setting that SHOW hides from other
 * roles, and these errors reach whichever role needed a key: the path
 * goes to the server log only.
 */
#define KEY_FILE_DETAIL(path) errdetail_log("The local master key file is \"%s\".", (path))

typedef struct LocalKeyLine
{
	char		version[KMS_VERSION_NAME_MAX + 1];
	uint8_t		key[FLE_KEY_LEN];
} LocalKeyLine;

static const char *
local_key_file(void)
{
	if (kms_local_master_key_file == NULL || kms_local_master_key_file[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no local master key is configured"),
				 errhint("Set bsoncrypt.local_master_key_file in postgresql.conf to a file holding a base64 96-byte key, then reload.")));
	return kms_local_master_key_file;
}

/* Parse one non-comment line into *entry; false if it is malformed. */
static bool
parse_key_line(char *line, LocalKeyLine *entry, bool *named)
{
	char	   *version = NULL;
	char	   *key = line;
	char	   *space = strpbrk(line, " \t");

	if (space != NULL)
	{
		*space = '\0';
		version = line;
		key = space + 1;
		key += strspn(key, " \t");
	}
	*named = (version != NULL);
	if (version == NULL)
		version = LOCAL_DEFAULT_VERSION;
	if (!kms_valid_version_name(version))
		return false;
	strlcpy(entry->version, version, sizeof(entry->version));
	return kms_decode_master_key(key, strlen(key), entry->key);
}

/*
 * Reading the key file: with read(2) into buffers of our own, zeroed after
 * use (a stdio buffer would go back to malloc still holding the keys), and
 * growing the ring by hand (repalloc would free the old array unzeroed).
 */
typedef struct KeyFileReader
{
	const char *path;
	int			fd;
	char		chunk[KEY_LINE_MAX];	/* bytes read from the file */
	char		line[KEY_LINE_MAX];		/* the line being assembled */
	size_t		len;			/* of line */
	bool		overlong;		/* the line did not fit */
	int			lineno;
	LocalKeyLine *ring;
	int			capacity;
	int			count;			/* keys in ring */
	bool		any_unnamed;
} KeyFileReader;

/* Zero what held key bytes and close the file; the ring too if free_ring. */
static void
key_file_reader_end(KeyFileReader *r, bool free_ring)
{
	explicit_bzero(r->chunk, sizeof(r->chunk));
	explicit_bzero(r->line, sizeof(r->line));
	if (free_ring && r->ring != NULL)
	{
		explicit_bzero(r->ring, sizeof(LocalKeyLine) * r->capacity);
		pfree(r->ring);
		r->ring = NULL;
	}
	if (r->fd >= 0)
	{
		CloseTransientFile(r->fd);
		r->fd = -1;
	}
}

/* Room for one more key in the ring. */
static void
key_ring_reserve(KeyFileReader *r)
{
	LocalKeyLine *grown;

	if (r->count < r->capacity)
		return;
	grown = palloc0(sizeof(LocalKeyLine) * r->capacity * 2);
	memcpy(grown, r->ring, sizeof(LocalKeyLine) * r->count);
	explicit_bzero(r->ring, sizeof(LocalKeyLine) * r->capacity);
	pfree(r->ring);
	r->ring = grown;
	r->capacity *= 2;
}

/* The line assembled in r->line is complete: parse it into the ring. */
static void
key_file_take_line(KeyFileReader *r)
{
	char	   *start;
	bool		named;

	r->lineno++;
	r->line[r->len] = '\0';
	r->line[strcspn(r->line, "\r")] = '\0';
	start = r->line + strspn(r->line, " \t");
	if (*start == '#' || (*start == '\0' && !r->overlong))
		return;
	key_ring_reserve(r);
	if (r->overlong || !parse_key_line(start, &r->ring[r->count], &named) ||
		(!named && (r->any_unnamed || r->count > 0)))
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("invalid master key in local master key file, line %d", r->lineno),
				 KEY_FILE_DETAIL(r->path),
				 errhint("Each line must be \"<version> <base64 of 96 bytes>\", or a single line of base64; versions use letters, digits, '.', '_' and '-', starting with a letter or digit.")));
	r->any_unnamed |= !named;
	r->count++;
}

/* Read the whole file into r->ring. */
static void
key_file_read(KeyFileReader *r)
{
	for (;;)
	{
		ssize_t		got = read(r->fd, r->chunk, sizeof(r->chunk));

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read local master key file: %m"),
					 KEY_FILE_DETAIL(r->path)));
		if (got == 0)
			break;
		for (ssize_t i = 0; i < got; i++)
		{
			if (r->chunk[i] == '\n')
			{
				key_file_take_line(r);
				r->len = 0;
				r->overlong = false;
			}
			else if (r->len < sizeof(r->line) - 1)
				r->line[r->len++] = r->chunk[i];
			else
				r->overlong = true;
		}
	}
	if (r->len > 0 || r->overlong)
		key_file_take_line(r);
}

/*
 * Read the whole key ring.  Returns a palloc'd array of *count entries that
 * the caller must explicit_bzero and pfree.
 */
static LocalKeyLine *
read_key_ring(int *count)
{
	KeyFileReader r;

	memset(&r, 0, sizeof(r));
	r.path = local_key_file();
	r.fd = -1;
	kms_check_secret_file(r.path, "local master key file");
	r.capacity = 4;
	r.ring = palloc0(sizeof(LocalKeyLine) * r.capacity);
	r.fd = OpenTransientFile(r.path, O_RDONLY | PG_BINARY);
	if (r.fd < 0)
	{
		int			save_errno = errno;

		key_file_reader_end(&r, true);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open local master key file: %m"),
				 KEY_FILE_DETAIL(r.path)));
	}
	PG_TRY();
	{
		key_file_read(&r);
	}
	PG_CATCH();
	{
		key_file_reader_end(&r, true);
		PG_RE_THROW();
	}
	PG_END_TRY();
	key_file_reader_end(&r, r.count == 0);
	if (r.count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("local master key file holds no key"),
				 KEY_FILE_DETAIL(r.path)));
	*count = r.count;
	return r.ring;
}

static void
local_open(const char *version, const BsonData *master_key, KmsOpened *opened)
{
	int			count;
	LocalKeyLine *ring = read_key_ring(&count);
	int			found = -1;

	if (version == NULL)
		found = count - 1;
	else
	{
		for (int i = count - 1; i >= 0 && found < 0; i--)
			if (strcmp(ring[i].version, version) == 0)
				found = i;
	}
	if (found >= 0)
	{
		memcpy(opened->key, ring[found].key, FLE_KEY_LEN);
		opened->handed_out = true;
		opened->version = pstrdup(ring[found].version);
	}
	explicit_bzero(ring, sizeof(LocalKeyLine) * count);
	pfree(ring);
	if (found < 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("master key version \"%s\" is not in local master key file", version),
				 KEY_FILE_DETAIL(kms_local_master_key_file),
				 errhint("Keys that still wrap data keys must stay in the file until bsoncrypt.rotation_status shows no key on them.")));
}

static List *
local_list_versions(void)
{
	int			count;
	LocalKeyLine *ring = read_key_ring(&count);
	List	   *versions = NIL;

	/* newest first: imports usually come from the current key */
	for (int i = count - 1; i >= 0; i--)
		versions = lappend(versions, pstrdup(ring[i].version));
	explicit_bzero(ring, sizeof(LocalKeyLine) * count);
	pfree(ring);
	return versions;
}

const KmsProvider kms_local_provider = {
	.name = "local",
	.open = local_open,
	.list_versions = local_list_versions,
};
