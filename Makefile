# bsoncrypt — PGXS build.
#
# The install script extension/bsoncrypt--0.1.sql is assembled from the
# ordered pieces in extension/parts/ so that each feature keeps its SQL next
# to the others without one giant file.

MODULE_big = bsoncrypt
SOURCES ?= $(sort $(wildcard src/*.c))
OBJS = $(patsubst %.c,%.o,$(SOURCES))
SQL_PARTS ?= $(sort $(wildcard extension/parts/*.sql))

EXT_VERSION = 0.1
MODULEDIR = extension
DATA = control/bsoncrypt.control
DATA_built = extension/bsoncrypt--$(EXT_VERSION).sql

# pg_regress: every sql/*.sql, in name order
REGRESS = $(sort $(basename $(notdir $(wildcard sql/*.sql))))
REGRESS_OPTS = --inputdir=. --outputdir=. --load-extension=bsoncrypt
ISOLATION = $(sort $(basename $(notdir $(wildcard specs/*.spec))))
ISOLATION_OPTS = --load-extension=bsoncrypt
# TAP tests (t/*.pl) are run by scripts/run-tests.sh with prove.

# libbson: linked statically and kept private (DocumentDB's core library
# exports its own libbson globally; we must always bind to ours).
BSON_CFLAGS := $(shell pkg-config --cflags libbson-static-1.0)
BSON_LIBS := $(shell pkg-config --libs libbson-static-1.0)

PG_CPPFLAGS = $(BSON_CFLAGS) -Isrc
PG_CFLAGS = -Wall -Werror
SHLIB_LINK = -Wl,--exclude-libs,ALL -Wl,--version-script=src/exports.map -Wl,-Bsymbolic \
	$(BSON_LIBS) -lssl -lcrypto

EXTRA_CLEAN = extension/bsoncrypt--$(EXT_VERSION).sql results regression.diffs \
	regression.out tmp_check output_iso log

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

extension/bsoncrypt--$(EXT_VERSION).sql: $(SQL_PARTS)
	cat $^ > $@

# relink when the export list changes
$(shlib): src/exports.map

# bsoncrypt under the name of the output plugin it wraps: with
# dynamic_library_path = '$libdir/bsoncrypt_decoders:$libdir', slots made
# with "pgoutput" (subscriptions, Citus's shard moves) decode through
# bsoncrypt, which hands decrypted changes to the real pgoutput
# (docs/at-rest-encryption.md).  A link, so that it is the same library.
DECODERS_DIR = $(DESTDIR)$(pkglibdir)/bsoncrypt_decoders
install: install-decoders
install-decoders: installdirs
	$(MKDIR_P) '$(DECODERS_DIR)'
	ln -sf ../$(MODULE_big)$(DLSUFFIX) '$(DECODERS_DIR)/pgoutput$(DLSUFFIX)'
uninstall: uninstall-decoders
uninstall-decoders:
	rm -f '$(DECODERS_DIR)/pgoutput$(DLSUFFIX)'
	-rmdir '$(DECODERS_DIR)'
.PHONY: install-decoders uninstall-decoders

# PGXS tracks no header dependencies: rebuild every object when a header of
# src/ changes (a changed struct or enum must never meet a stale object)
$(OBJS): $(wildcard src/*.h)
