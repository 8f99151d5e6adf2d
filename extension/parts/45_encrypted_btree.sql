-- At-rest encryption of index keys: the encrypted_btree index access method.
-- btree's own code over key columns of type sealed_key, each key value
-- stored as AES-256-GCM ciphertext under a key of the index file (kept in
-- relation_keys like the keys of table files).

-- What the key columns of an encrypted_btree index hold.  Values are made
-- by the index only (the input function refuses); the output function
-- opens one (a unique violation's detail shows the plaintext, as btree's).
CREATE TYPE sealed_key;
CREATE FUNCTION _sealed_key_in(cstring) RETURNS sealed_key
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_in' LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;
CREATE FUNCTION _sealed_key_out(sealed_key) RETURNS cstring
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_out' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE TYPE sealed_key (
    INPUT = _sealed_key_in,
    OUTPUT = _sealed_key_out,
    INTERNALLENGTH = VARIABLE,
    STORAGE = main,
    ALIGNMENT = int4
);
COMMENT ON TYPE sealed_key IS 'a key of an encrypted_btree index: AES-256-GCM ciphertext of the value';

-- The comparison of every encrypted operator class (support function 1),
-- and the operators btree needs between two sealed keys (redundant scan
-- keys, array keys): both sides are opened, then compared with the btree
-- comparison of their types.
CREATE FUNCTION _sealed_key_cmp(sealed_key, sealed_key) RETURNS integer
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_cmp' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE FUNCTION _sealed_key_lt(sealed_key, sealed_key) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_lt' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE FUNCTION _sealed_key_le(sealed_key, sealed_key) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_le' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE FUNCTION _sealed_key_eq(sealed_key, sealed_key) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_eq' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE FUNCTION _sealed_key_ge(sealed_key, sealed_key) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_ge' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE FUNCTION _sealed_key_gt(sealed_key, sealed_key) RETURNS boolean
    AS 'MODULE_PATHNAME', 'bsoncrypt_sealed_key_gt' LANGUAGE C STRICT STABLE PARALLEL SAFE;
CREATE OPERATOR < (LEFTARG = sealed_key, RIGHTARG = sealed_key, FUNCTION = _sealed_key_lt);
CREATE OPERATOR <= (LEFTARG = sealed_key, RIGHTARG = sealed_key, FUNCTION = _sealed_key_le);
CREATE OPERATOR = (LEFTARG = sealed_key, RIGHTARG = sealed_key, FUNCTION = _sealed_key_eq);
CREATE OPERATOR >= (LEFTARG = sealed_key, RIGHTARG = sealed_key, FUNCTION = _sealed_key_ge);
CREATE OPERATOR > (LEFTARG = sealed_key, RIGHTARG = sealed_key, FUNCTION = _sealed_key_gt);

CREATE FUNCTION encrypted_btree_handler(internal) RETURNS index_am_handler
    AS 'MODULE_PATHNAME', 'bsoncrypt_encrypted_btree_handler' LANGUAGE C STRICT;
CREATE ACCESS METHOD encrypted_btree TYPE INDEX HANDLER encrypted_btree_handler;
COMMENT ON ACCESS METHOD encrypted_btree IS
    'btree whose keys are stored AES-256-GCM encrypted (bsoncrypt at-rest encryption)';

-- The default encrypted_btree operator class of a type, in a family that
-- mirrors the family of the type's default btree class: the same operators
-- (so the planner matches the same clauses, and maps the family back to
-- btree's for ORDER BY and merge joins), each comparison replaced by the
-- sealed one.  Returns the operator class.  Types whose default btree
-- class is in the family get theirs from it too (int2/int4/int8, ...).
CREATE FUNCTION create_encrypted_opclass(type regtype, add_to_extension boolean DEFAULT true)
RETURNS text
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    eb oid := (SELECT a.oid FROM pg_catalog.pg_am a WHERE a.amname OPERATOR(pg_catalog.=) 'encrypted_btree');
    ns oid := 'bsoncrypt'::pg_catalog.regnamespace;
    bt record;
    fam text;
    fam_oid oid;
    opc text;
    r record;
BEGIN
    SELECT c.opcname, c.opcfamily, f.opfname, n.nspname INTO bt
      FROM pg_catalog.pg_opclass c
      JOIN pg_catalog.pg_am a ON a.oid OPERATOR(pg_catalog.=) c.opcmethod
      JOIN pg_catalog.pg_opfamily f ON f.oid OPERATOR(pg_catalog.=) c.opcfamily
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.opcnamespace
     WHERE a.amname OPERATOR(pg_catalog.=) 'btree' AND c.opcdefault
       AND c.opcintype OPERATOR(pg_catalog.=) type;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'type % has no default btree operator class', type
            USING ERRCODE = 'undefined_object';
    END IF;
    SELECT pg_catalog.format('%I.%I', n.nspname, c.opcname) INTO opc
      FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.opcnamespace
     WHERE c.opcmethod OPERATOR(pg_catalog.=) eb AND c.opcdefault AND c.opcintype OPERATOR(pg_catalog.=) type;
    IF FOUND THEN
        RETURN opc;
    END IF;
    fam := CASE WHEN bt.nspname OPERATOR(pg_catalog.=) 'pg_catalog' THEN bt.opfname
                ELSE bt.nspname OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) bt.opfname END;
    opc := CASE WHEN bt.nspname OPERATOR(pg_catalog.=) 'pg_catalog' THEN bt.opcname
                ELSE bt.nspname OPERATOR(pg_catalog.||) '_' OPERATOR(pg_catalog.||) bt.opcname END;

    SELECT f.oid INTO fam_oid FROM pg_catalog.pg_opfamily f
     WHERE f.opfmethod OPERATOR(pg_catalog.=) eb AND f.opfnamespace OPERATOR(pg_catalog.=) ns
       AND f.opfname OPERATOR(pg_catalog.=) fam;
    IF NOT FOUND THEN
        EXECUTE pg_catalog.format('CREATE OPERATOR FAMILY bsoncrypt.%I USING encrypted_btree', fam);
        EXECUTE pg_catalog.format('ALTER OPERATOR FAMILY bsoncrypt.%I USING encrypted_btree ADD
            OPERATOR 1 bsoncrypt.< (bsoncrypt.sealed_key, bsoncrypt.sealed_key),
            OPERATOR 2 bsoncrypt.<= (bsoncrypt.sealed_key, bsoncrypt.sealed_key),
            OPERATOR 3 bsoncrypt.= (bsoncrypt.sealed_key, bsoncrypt.sealed_key),
            OPERATOR 4 bsoncrypt.>= (bsoncrypt.sealed_key, bsoncrypt.sealed_key),
            OPERATOR 5 bsoncrypt.> (bsoncrypt.sealed_key, bsoncrypt.sealed_key),
            FUNCTION 1 (bsoncrypt.sealed_key, bsoncrypt.sealed_key)
                bsoncrypt._sealed_key_cmp(bsoncrypt.sealed_key, bsoncrypt.sealed_key)', fam);
        IF add_to_extension THEN
            EXECUTE pg_catalog.format('ALTER EXTENSION bsoncrypt ADD OPERATOR FAMILY bsoncrypt.%I USING encrypted_btree', fam);
        END IF;
        SELECT f.oid INTO fam_oid FROM pg_catalog.pg_opfamily f
         WHERE f.opfmethod OPERATOR(pg_catalog.=) eb AND f.opfnamespace OPERATOR(pg_catalog.=) ns
           AND f.opfname OPERATOR(pg_catalog.=) fam;
    END IF;

    -- the btree family's search operators not yet mirrored
    FOR r IN
        SELECT o.amopstrategy, p.oprname, pn.nspname, o.amoplefttype::pg_catalog.regtype AS lt,
               o.amoprighttype::pg_catalog.regtype AS rt
          FROM pg_catalog.pg_amop o
          JOIN pg_catalog.pg_operator p ON p.oid OPERATOR(pg_catalog.=) o.amopopr
          JOIN pg_catalog.pg_namespace pn ON pn.oid OPERATOR(pg_catalog.=) p.oprnamespace
         WHERE o.amopfamily OPERATOR(pg_catalog.=) bt.opcfamily AND o.amoppurpose OPERATOR(pg_catalog.=) 's'
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_amop m
                            WHERE m.amopfamily OPERATOR(pg_catalog.=) fam_oid
                              AND m.amoplefttype OPERATOR(pg_catalog.=) o.amoplefttype
                              AND m.amoprighttype OPERATOR(pg_catalog.=) o.amoprighttype
                              AND m.amopstrategy OPERATOR(pg_catalog.=) o.amopstrategy)
         ORDER BY 4, 5, 1
    LOOP
        EXECUTE pg_catalog.format('ALTER OPERATOR FAMILY bsoncrypt.%I USING encrypted_btree ADD OPERATOR %s %I.%s (%s, %s)',
                                  fam, r.amopstrategy, r.nspname, r.oprname, r.lt, r.rt);
    END LOOP;
    -- the sealed comparison for each pair of types btree compares, and
    -- for each type against a probe (sealed_key)
    FOR r IN
        SELECT DISTINCT x.lt, x.rt FROM (
            SELECT p.amproclefttype::pg_catalog.regtype AS lt, p.amprocrighttype::pg_catalog.regtype AS rt
              FROM pg_catalog.pg_amproc p
             WHERE p.amprocfamily OPERATOR(pg_catalog.=) bt.opcfamily AND p.amprocnum OPERATOR(pg_catalog.=) 1
            UNION
            SELECT p.amproclefttype::pg_catalog.regtype, 'bsoncrypt.sealed_key'::pg_catalog.regtype
              FROM pg_catalog.pg_amproc p
             WHERE p.amprocfamily OPERATOR(pg_catalog.=) bt.opcfamily AND p.amprocnum OPERATOR(pg_catalog.=) 1) x
         WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_amproc m
                            WHERE m.amprocfamily OPERATOR(pg_catalog.=) fam_oid AND m.amprocnum OPERATOR(pg_catalog.=) 1
                              AND m.amproclefttype OPERATOR(pg_catalog.=) x.lt
                              AND m.amprocrighttype OPERATOR(pg_catalog.=) x.rt)
         ORDER BY 1, 2
    LOOP
        EXECUTE pg_catalog.format('ALTER OPERATOR FAMILY bsoncrypt.%I USING encrypted_btree ADD FUNCTION 1 (%s, %s)
                                       bsoncrypt._sealed_key_cmp(bsoncrypt.sealed_key, bsoncrypt.sealed_key)',
                                  fam, r.lt, r.rt);
    END LOOP;

    EXECUTE pg_catalog.format('CREATE OPERATOR CLASS bsoncrypt.%I DEFAULT FOR TYPE %s USING encrypted_btree
                                   FAMILY bsoncrypt.%I AS STORAGE bsoncrypt.sealed_key', opc, type, fam);
    IF add_to_extension THEN
        EXECUTE pg_catalog.format('ALTER EXTENSION bsoncrypt ADD OPERATOR CLASS bsoncrypt.%I USING encrypted_btree', opc);
    END IF;
    RETURN pg_catalog.format('bsoncrypt.%I', opc);
END $$;
COMMENT ON FUNCTION create_encrypted_opclass(regtype, boolean) IS
    'create the default encrypted_btree operator class of a type, mirroring its default btree operator class';
REVOKE ALL ON FUNCTION create_encrypted_opclass(regtype, boolean) FROM PUBLIC;

-- inside this script new operator classes become extension members by themselves
SELECT bsoncrypt.create_encrypted_opclass(t, false)
  FROM pg_catalog.unnest(ARRAY['int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'numeric',
                               'text', 'bpchar', 'bytea', 'uuid', 'bool', 'date', 'time',
                               'timestamp', 'timestamptz', 'interval',
                               'bsoncrypt.bson']::pg_catalog.regtype[]) t;
-- What bsoncrypt makes for DocumentDB when both are installed: the casts
-- with documentdb_core.bson, and its encrypted class when DocumentDB gives
-- the type a default btree class.  Run by this script when DocumentDB came
-- first, and by the utility hook after a CREATE EXTENSION that made
-- documentdb_core (encrypted_btree_ddl.c).  False when DocumentDB is absent.
CREATE FUNCTION _adopt_documentdb(add_to_extension boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ddb pg_catalog.regtype := bsoncrypt._documentdb_bson_type();
BEGIN
    IF ddb IS NULL THEN
        RETURN false;
    END IF;
    PERFORM bsoncrypt.create_documentdb_casts(add_to_extension);
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_am a ON a.oid OPERATOR(pg_catalog.=) c.opcmethod
                WHERE a.amname OPERATOR(pg_catalog.=) 'btree' AND c.opcdefault
                  AND c.opcintype OPERATOR(pg_catalog.=) ddb)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_opclass c JOIN pg_catalog.pg_am a ON a.oid OPERATOR(pg_catalog.=) c.opcmethod
                        WHERE a.amname OPERATOR(pg_catalog.=) 'encrypted_btree'
                          AND c.opcintype OPERATOR(pg_catalog.=) ddb) THEN
        PERFORM bsoncrypt.create_encrypted_opclass(ddb, add_to_extension);
    END IF;
    RETURN true;
END $$;
REVOKE ALL ON FUNCTION _adopt_documentdb(boolean) FROM PUBLIC;
SELECT bsoncrypt._adopt_documentdb(false);

-- amcheck's bt_index_check for encrypted_btree: every leaf entry opens
-- (its key, heap TID and type authenticated) and the entries are in order.
CREATE FUNCTION encrypted_index_check(index regclass) RETURNS bigint
    AS 'MODULE_PATHNAME', 'bsoncrypt_encrypted_index_check' LANGUAGE C STRICT;
COMMENT ON FUNCTION encrypted_index_check(regclass) IS
    'check that an encrypted_btree index''s entries decrypt and are in order; returns how many were checked';
REVOKE ALL ON FUNCTION encrypted_index_check(regclass) FROM PUBLIC;
