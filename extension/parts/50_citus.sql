-- bsoncrypt on a Citus cluster (docs/citus.md, src/citus_cluster.c).  Every
-- object here works without Citus too: the triggers do nothing, the views
-- show this server alone.

CREATE FUNCTION cluster_role() RETURNS text
    AS 'MODULE_PATHNAME', 'bsoncrypt_cluster_role' LANGUAGE C STABLE;
COMMENT ON FUNCTION cluster_role() IS
    'none without Citus; coordinator or worker on a Citus cluster';

-- One key vault: each statement that changes the coordinator's vault is
-- applied to every worker in the same distributed transaction; a worker's
-- vault changes only that way.
CREATE FUNCTION _key_vault_propagate() RETURNS trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_key_vault_propagate' LANGUAGE C;
CREATE TRIGGER key_vault_cluster_insert AFTER INSERT ON key_vault
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION _key_vault_propagate();
CREATE TRIGGER key_vault_cluster_update AFTER UPDATE ON key_vault
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION _key_vault_propagate();
CREATE TRIGGER key_vault_cluster_delete AFTER DELETE ON key_vault
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION _key_vault_propagate();
CREATE TRIGGER key_vault_cluster_truncate AFTER TRUNCATE ON key_vault
    FOR EACH STATEMENT EXECUTE FUNCTION _key_vault_propagate();

-- What a worker runs for each change (as the role that made it on the
-- coordinator), and for the whole vault (op 'sync').
CREATE FUNCTION _cluster_apply_key_vault(op text, old_ids uuid[], ids uuid[],
                                         key_alt_names text[], key_materials bytea[],
                                         master_keys bytea[], master_key_versions text[],
                                         creation_usecs bigint[], update_usecs bigint[],
                                         statuses integer[])
RETURNS bigint
    AS 'MODULE_PATHNAME', 'bsoncrypt_cluster_apply_key_vault' LANGUAGE C VOLATILE;

CREATE FUNCTION _cluster_run_on_workers(command text) RETURNS void
    AS 'MODULE_PATHNAME', 'bsoncrypt_cluster_run_on_workers' LANGUAGE C VOLATILE STRICT;

CREATE FUNCTION cluster_sync_key_vault() RETURNS integer
    AS 'MODULE_PATHNAME', 'bsoncrypt_cluster_sync_key_vault' LANGUAGE C VOLATILE;
COMMENT ON FUNCTION cluster_sync_key_vault() IS
    'make every Citus worker''s key vault and privileges the coordinator''s (repairs); returns the number of workers';

-- Privileges on the extension's own functions, tables, views and
-- sequences: what the coordinator has, every worker gets (after GRANT and
-- REVOKE, and when Citus activates a node).
CREATE FUNCTION _cluster_acl_command() RETURNS text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    WITH member AS (
        SELECT d.classid, d.objid FROM pg_catalog.pg_depend d
         WHERE d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e
                                                   WHERE e.extname OPERATOR(pg_catalog.=) 'bsoncrypt')
           AND d.deptype OPERATOR(pg_catalog.=) 'e'),
    m AS (
        SELECT 'FUNCTION' AS kind, p.oid::pg_catalog.regprocedure::pg_catalog.text AS object,
               COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))::pg_catalog.text AS acl
          FROM member JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) member.objid
         WHERE member.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
        UNION ALL
        SELECT CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
               c.oid::pg_catalog.regclass::pg_catalog.text,
               COALESCE(c.relacl, pg_catalog.acldefault(CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S'
                                                             THEN 's' ELSE 'r' END::"char",
                                                        c.relowner))::pg_catalog.text
          FROM member JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) member.objid
         WHERE member.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
           AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,v,S}'::"char"[]))
    SELECT pg_catalog.format('SELECT bsoncrypt._cluster_set_acls(%L::pg_catalog.text[], %L::pg_catalog.text[], %L::pg_catalog.text[])',
                             pg_catalog.array_agg(m.kind ORDER BY m.kind, m.object),
                             pg_catalog.array_agg(m.object ORDER BY m.kind, m.object),
                             pg_catalog.array_agg(m.acl ORDER BY m.kind, m.object))
      FROM m
$$;

-- On a worker: make the privileges of the extension's objects those given
-- (grants by the objects' owners; the owner's own privileges stay).
CREATE FUNCTION _cluster_set_acls(kinds text[], objects text[], acls text[]) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ext oid := (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'bsoncrypt');
    obj oid;
    owner oid;
    current_acl pg_catalog.aclitem[];
    target pg_catalog.aclitem[];
    g record;
BEGIN
    FOR i IN 1 .. COALESCE(pg_catalog.cardinality(objects), 0) LOOP
        IF kinds[i] OPERATOR(pg_catalog.=) 'FUNCTION' THEN
            obj := objects[i]::pg_catalog.regprocedure;
            SELECT p.proowner, COALESCE(p.proacl, pg_catalog.acldefault('f', p.proowner))
              INTO owner, current_acl FROM pg_catalog.pg_proc p WHERE p.oid OPERATOR(pg_catalog.=) obj;
        ELSIF kinds[i] OPERATOR(pg_catalog.=) ANY ('{TABLE,SEQUENCE}'::pg_catalog.text[]) THEN
            obj := objects[i]::pg_catalog.regclass;
            SELECT c.relowner,
                   COALESCE(c.relacl, pg_catalog.acldefault(CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S'
                                                                 THEN 's' ELSE 'r' END::"char", c.relowner))
              INTO owner, current_acl FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) obj;
        ELSE
            RAISE EXCEPTION 'unknown kind of object "%"', kinds[i] USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.objid OPERATOR(pg_catalog.=) obj
                          AND d.refobjid OPERATOR(pg_catalog.=) ext
                          AND d.deptype OPERATOR(pg_catalog.=) 'e') THEN
            RAISE EXCEPTION '% is not an object of extension bsoncrypt', objects[i]
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        target := acls[i]::pg_catalog.aclitem[];
        FOR g IN SELECT a.grantee, a.privilege_type FROM pg_catalog.aclexplode(current_acl) a
                  WHERE a.grantee OPERATOR(pg_catalog.<>) owner
                 EXCEPT
                 SELECT a.grantee, a.privilege_type FROM pg_catalog.aclexplode(target) a
        LOOP
            EXECUTE pg_catalog.format('REVOKE %s ON %s %s FROM %s', g.privilege_type, kinds[i], objects[i],
                                      CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END);
        END LOOP;
        FOR g IN SELECT a.grantee, a.privilege_type, a.is_grantable FROM pg_catalog.aclexplode(target) a
                  WHERE a.grantee OPERATOR(pg_catalog.<>) owner
                 EXCEPT
                 SELECT a.grantee, a.privilege_type, a.is_grantable FROM pg_catalog.aclexplode(current_acl) a
        LOOP
            EXECUTE pg_catalog.format('GRANT %s ON %s %s TO %s%s', g.privilege_type, kinds[i], objects[i],
                                      CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                                           ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
                                      CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
        END LOOP;
    END LOOP;
END $$;

CREATE FUNCTION _cluster_acls_changed() RETURNS event_trigger
    AS 'MODULE_PATHNAME', 'bsoncrypt_cluster_acls_changed' LANGUAGE C;
CREATE EVENT TRIGGER bsoncrypt_cluster_acls ON ddl_command_end
    WHEN TAG IN ('GRANT', 'REVOKE')
    EXECUTE FUNCTION _cluster_acls_changed();

-- Rotation across the cluster: each node's rotation_status and
-- master_key_versions (as JSON), read from every node (Citus's
-- run_command_on_all_nodes, in connections of their own, as the reading
-- role).  A node that does not answer has one row with its error.
CREATE FUNCTION _cluster_view_rows(view_name text,
                                   OUT nodeid integer, OUT nodename text, OUT nodeport integer,
                                   OUT rows jsonb, OUT error text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    query text;
BEGIN
    IF view_name OPERATOR(pg_catalog.<>) ALL ('{rotation_status,master_key_versions}'::pg_catalog.text[]) THEN
        RAISE EXCEPTION 'no cluster view of "%"', view_name USING ERRCODE = 'invalid_parameter_value';
    END IF;
    query := pg_catalog.format('SELECT COALESCE(pg_catalog.jsonb_agg(pg_catalog.to_jsonb(v)), ''[]'') FROM bsoncrypt.%I v',
                               view_name);
    IF bsoncrypt.cluster_role() OPERATOR(pg_catalog.=) 'none' THEN
        EXECUTE query INTO rows;
        nodeid := NULL; nodename := NULL; nodeport := NULL; error := NULL;
        RETURN NEXT;
        RETURN;
    END IF;
    RETURN QUERY EXECUTE
        'SELECT r.nodeid, n.nodename::pg_catalog.text, n.nodeport,
                CASE WHEN r.success THEN r.result::pg_catalog.jsonb END,
                CASE WHEN NOT r.success THEN r.result END
           FROM pg_catalog.run_command_on_all_nodes($1) r
           LEFT JOIN pg_catalog.pg_dist_node n ON n.nodeid OPERATOR(pg_catalog.=) r.nodeid
          ORDER BY r.nodeid'
        USING query;
END $$;

CREATE VIEW cluster_rotation_status AS
SELECT q.nodeid, q.nodename, q.nodeport,
       s.provider, s.state, s.from_versions, s.to_version, s.keys_total, s.keys_done,
       s.requested, s.started, s.finished, s.last_error, s.failures, s.next_attempt,
       q.error AS node_error
  FROM bsoncrypt._cluster_view_rows('rotation_status') q
  LEFT JOIN LATERAL pg_catalog.jsonb_to_recordset(q.rows)
       AS s(provider text, state text, from_versions text[], to_version text, keys_total bigint,
            keys_done bigint, requested timestamptz, started timestamptz, finished timestamptz,
            last_error text, failures integer, next_attempt timestamptz) ON true;
COMMENT ON VIEW cluster_rotation_status IS
    'rotation_status of every node of a Citus cluster (node_error: the node did not answer)';

CREATE VIEW cluster_master_key_versions AS
SELECT q.nodeid, q.nodename, q.nodeport,
       v.provider, v.master_key_version, v.data_keys, v.relation_keys,
       q.error AS node_error
  FROM bsoncrypt._cluster_view_rows('master_key_versions') q
  LEFT JOIN LATERAL pg_catalog.jsonb_to_recordset(q.rows)
       AS v(provider text, master_key_version text, data_keys bigint, relation_keys bigint) ON true;
COMMENT ON VIEW cluster_master_key_versions IS
    'master key versions that still wrap keys, on every node of a Citus cluster';

-- A version may be retired when no node uses it: false while any node
-- lists it, and while any node does not answer.
CREATE FUNCTION master_key_version_retirable(provider text, master_key_version text) RETURNS boolean
LANGUAGE sql STABLE STRICT SET search_path = pg_catalog, pg_temp AS $$
    SELECT NOT EXISTS (SELECT 1 FROM bsoncrypt.cluster_master_key_versions v
                        WHERE v.node_error IS NOT NULL
                           OR (v.provider OPERATOR(pg_catalog.=) $1
                               AND v.master_key_version OPERATOR(pg_catalog.=) $2))
$$;
COMMENT ON FUNCTION master_key_version_retirable(text, text) IS
    'true when no node (of a Citus cluster, or this server) has a key wrapped by this master key version';

-- (90_privileges.sql revokes everything from PUBLIC) monitoring roles may
-- watch; functions in views are run with the reader's privileges
GRANT SELECT ON cluster_rotation_status, cluster_master_key_versions TO pg_monitor;
GRANT EXECUTE ON FUNCTION cluster_role(), _cluster_view_rows(text),
    master_key_version_retirable(text, text) TO pg_monitor;
