-- Binary-coercible casts with DocumentDB's documentdb_core.bson (same bytes).
-- Created now if DocumentDB is installed, or later by calling this function.
-- Only for DocumentDB's own type: a base varlena type called bson that is a
-- member of the extension documentdb_core (which only a superuser installs),
-- with that extension's bson_in/bson_out as I/O, never for whatever some role
-- created under that name (a WITHOUT FUNCTION cast to a type of another
-- representation crashes the server).
CREATE FUNCTION _documentdb_bson_type() RETURNS regtype
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT t.oid::pg_catalog.regtype
      FROM pg_catalog.pg_extension e
      JOIN pg_catalog.pg_depend d
        ON d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
       AND d.refobjid OPERATOR(pg_catalog.=) e.oid
       AND d.deptype OPERATOR(pg_catalog.=) 'e'
       AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
      JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) d.objid
      JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
      JOIN pg_catalog.pg_proc i ON i.oid OPERATOR(pg_catalog.=) t.typinput
      JOIN pg_catalog.pg_proc o ON o.oid OPERATOR(pg_catalog.=) t.typoutput
     WHERE e.extname OPERATOR(pg_catalog.=) 'documentdb_core'
       AND n.nspname OPERATOR(pg_catalog.=) 'documentdb_core'
       AND t.typname OPERATOR(pg_catalog.=) 'bson'
       AND t.typtype OPERATOR(pg_catalog.=) 'b'
       AND t.typlen OPERATOR(pg_catalog.=) -1
       AND t.typalign OPERATOR(pg_catalog.=) 'i'
       AND t.typelem OPERATOR(pg_catalog.=) 0
       AND i.proname OPERATOR(pg_catalog.=) 'bson_in'
       AND o.proname OPERATOR(pg_catalog.=) 'bson_out'
       AND EXISTS (SELECT 1 FROM pg_catalog.pg_depend f
                    WHERE f.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                      AND f.objid OPERATOR(pg_catalog.=) ANY (ARRAY[i.oid, o.oid])
                      AND f.refobjid OPERATOR(pg_catalog.=) e.oid
                      AND f.deptype OPERATOR(pg_catalog.=) 'e'
                   HAVING pg_catalog.count(*) OPERATOR(pg_catalog.=) 2)
$$;

CREATE FUNCTION create_documentdb_casts(add_to_extension boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF bsoncrypt._documentdb_bson_type() IS NULL THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_cast c
                   WHERE c.castsource OPERATOR(pg_catalog.=) bsoncrypt._documentdb_bson_type()
                     AND c.casttarget OPERATOR(pg_catalog.=) 'bsoncrypt.bson'::pg_catalog.regtype) THEN
        -- DocumentDB documents pass to bsoncrypt functions implicitly;
        -- bsoncrypt results are assigned back to DocumentDB columns.
        CREATE CAST (documentdb_core.bson AS bsoncrypt.bson) WITHOUT FUNCTION AS IMPLICIT;
        CREATE CAST (bsoncrypt.bson AS documentdb_core.bson) WITHOUT FUNCTION AS ASSIGNMENT;
        IF add_to_extension THEN
            ALTER EXTENSION bsoncrypt ADD CAST (documentdb_core.bson AS bsoncrypt.bson);
            ALTER EXTENSION bsoncrypt ADD CAST (bsoncrypt.bson AS documentdb_core.bson);
        END IF;
    END IF;
    RETURN true;
END $$;
COMMENT ON FUNCTION create_documentdb_casts(boolean) IS
    'create binary-coercible casts between documentdb_core.bson and bsoncrypt.bson';
REVOKE ALL ON FUNCTION create_documentdb_casts(boolean) FROM PUBLIC;

-- made by bsoncrypt._adopt_documentdb() (45_encrypted_btree.sql) when
-- DocumentDB is installed
