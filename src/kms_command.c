/*-------------------------------------------------------------------------
 *
 * kms_command.c
 *	  The "command" master-key provider: bsoncrypt.master_key_command names
 *	  a shell command (superuser-only setting) that prints a master key —
 *	  the hook for any external KMS command-line tool.
 *
 *	  %n in the command is replaced by the wanted version, or by nothing
 *	  when the current version is wanted; %% is a literal %.  The command
 *	  prints one line: "<version> <base64 of 96 bytes>", or only the base64
 *	  (then the version is the one asked for, or "default").  A non-zero
 *	  exit status or any other output is an error; the output itself never
 *	  appears in messages.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "lib/stringinfo.h"
#include "storage/fd.h"

#include "kms.h"

#define COMMAND_OUTPUT_MAX 1024
#define COMMAND_DEFAULT_VERSION "default"

static char *
build_command(const char *version)
{
	StringInfoData cmd;
	const char *p;

	if (kms_master_key_command == NULL || kms_master_key_command[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("no master key command is configured"),
				 errhint("Set bsoncrypt.master_key_command in postgresql.conf, then reload.")));
	initStringInfo(&cmd);
	for (p = kms_master_key_command; *p; p++)
	{
		if (p[0] == '%' && p[1] == 'n')
		{
			appendStringInfoString(&cmd, version ? version : "");
			p++;
		}
		else if (p[0] == '%' && p[1] == '%')
		{
			appendStringInfoChar(&cmd, '%');
			p++;
		}
		else
			appendStringInfoChar(&cmd, *p);
	}
	return cmd.data;
}

/*
 * Run the command; returns its output in buf (caller zeroes).  The pipe is
 * read with read(2), never through stdio, whose buffer would go back to
 * malloc still holding the key.
 */
static void
run_key_command(const char *version, char *buf, size_t bufsize)
{
	char	   *cmd = build_command(version);
	FILE	   *pipe;
	size_t		n = 0;
	ssize_t		got = 0;
	int			read_errno = 0;
	int			rc;

	fflush(NULL);
	pipe = OpenPipeStream(cmd, "r");
	if (pipe == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not run master key command for version \"%s\": %m",
						version ? version : "(current)")));
	while (n < bufsize - 1)
	{
		got = read(fileno(pipe), buf + n, bufsize - 1 - n);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		n += got;
	}
	if (got < 0)
		read_errno = errno;
	buf[n] = '\0';
	/* drain anything longer so the command does not die of SIGPIPE */
	if (n == bufsize - 1)
	{
		char		drain[256];

		while ((got = read(fileno(pipe), drain, sizeof(drain))) > 0 ||
			   (got < 0 && errno == EINTR))
			;
		explicit_bzero(drain, sizeof(drain));
	}
	rc = ClosePipeStream(pipe);
	if (read_errno != 0)
	{
		explicit_bzero(buf, bufsize);
		errno = read_errno;
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not read the output of the master key command for version \"%s\": %m",
						version ? version : "(current)")));
	}
	if (rc != 0)
	{
		explicit_bzero(buf, bufsize);
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("master key command failed for version \"%s\": %s",
						version ? version : "(current)", wait_result_to_str(rc)),
				 errhint("The command is bsoncrypt.master_key_command; its standard error goes to the server log.")));
	}
}

/* Run the command for version (NULL: the current one) into key. */
static char *
command_load_master_key(const char *version, uint8_t key[FLE_KEY_LEN])
{
	char		out[COMMAND_OUTPUT_MAX];
	char	   *line;
	char	   *space;
	const char *got_version;
	char	   *result = NULL;
	bool		ok;

	if (version != NULL && !kms_valid_version_name(version))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid master key version name \"%s\"", version)));
	run_key_command(version, out, sizeof(out));
	line = out + strspn(out, " \t\r\n");
	line[strcspn(line, "\r\n")] = '\0';
	space = strpbrk(line, " \t");
	if (space != NULL)
	{
		*space = '\0';
		got_version = line;
		line = space + 1 + strspn(space + 1, " \t");
	}
	else
		got_version = version ? version : COMMAND_DEFAULT_VERSION;
	ok = kms_valid_version_name(got_version) &&
		(version == NULL || strcmp(got_version, version) == 0) &&
		kms_decode_master_key(line, strlen(line), key);
	if (ok)
		result = pstrdup(got_version);
	explicit_bzero(out, sizeof(out));
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_EXTERNAL_ROUTINE_EXCEPTION),
				 errmsg("master key command printed no valid key for version \"%s\"",
						version ? version : "(current)"),
				 errhint("It must print one line: \"<version> <base64 of 96 bytes>\", or only the base64.")));
	return result;
}

static void
command_open(const char *version, const BsonData *master_key, KmsOpened *opened)
{
	opened->version = command_load_master_key(version, opened->key);
	opened->handed_out = true;
}

static List *
command_list_versions(void)
{
	uint8_t		key[FLE_KEY_LEN];
	char	   *current = command_load_master_key(NULL, key);

	explicit_bzero(key, sizeof(key));
	return list_make1(current);
}

const KmsProvider kms_command_provider = {
	.name = "command",
	.open = command_open,
	.list_versions = command_list_versions,
};
