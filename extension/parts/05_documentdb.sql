-- Binary-coercible casts with DocumentDB's documentdb_core.bson (same bytes).
-- Created now if DocumentDB is installed, or later by calling this function.
CREATE FUNCTION create_documentdb_casts(add_to_extension boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF to_regtype('documentdb_core.bson') IS NULL THEN
        RETURN false;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_cast
                   WHERE castsource = 'documentdb_core.bson'::regtype
                     AND casttarget = 'bsoncrypt.bson'::regtype) THEN
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

-- inside this script new casts become extension members by themselves
SELECT create_documentdb_casts(false);
