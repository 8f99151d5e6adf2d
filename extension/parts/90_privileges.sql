-- Privileges: the bson type and its accessors are for everyone; the key vault
-- and key management are not; encryption and decryption are granted per role
-- (grant_encryption / grant_decryption below, or plain GRANT EXECUTE).
GRANT USAGE ON SCHEMA bsoncrypt TO PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA bsoncrypt FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA bsoncrypt FROM PUBLIC;

GRANT EXECUTE ON FUNCTION
    bson_in(cstring), bson_out(bson), bson_recv(internal), bson_send(bson),
    bson_from_bytea(bytea), bson_from_jsonb(jsonb), bson_to_jsonb(bson),
    bson_to_json(bson, boolean), bson_get(bson, text), bson_get_text(bson, text),
    bson_object_keys(bson),
    bson_cmp(bson, bson), bson_eq(bson, bson), bson_ne(bson, bson),
    bson_lt(bson, bson), bson_le(bson, bson), bson_gt(bson, bson), bson_ge(bson, bson),
    bson_hash(bson), bson_hash_extended(bson, bigint),
    is_encrypted(regclass), _key_uses_bound(integer)
TO PUBLIC;
-- which relations are encrypted at rest, with which key version (no key material)
GRANT SELECT ON encrypted_relations TO PUBLIC;

CREATE FUNCTION grant_encryption(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        bsoncrypt.encrypt_field(bsoncrypt.bson, text, text, text),
        bsoncrypt.encrypt_field(bsoncrypt.bson, text, uuid, text),
        bsoncrypt.encrypt_fields(bsoncrypt.bson, text[], text, text),
        bsoncrypt.encrypt_fields(bsoncrypt.bson, text[], uuid, text),
        bsoncrypt.encrypt_value(bsoncrypt.bson, text, text),
        bsoncrypt.encrypt_value(bsoncrypt.bson, uuid, text),
        bsoncrypt.encrypt_deterministic(bsoncrypt.bson, text),
        bsoncrypt.supply_customer_key(text, bytea),
        bsoncrypt.clear_customer_key(text),
        bsoncrypt.supplied_customer_keys() TO %s', role);
END $$;
COMMENT ON FUNCTION grant_encryption(regrole) IS
    'let a role encrypt fields with any key of the vault (it still cannot read the vault)';

CREATE FUNCTION grant_decryption(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
BEGIN
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        bsoncrypt.decrypt_field(bsoncrypt.bson, text),
        bsoncrypt.decrypt(bsoncrypt.bson),
        bsoncrypt.decrypt_value(bsoncrypt.bson),
        bsoncrypt.decrypt_get(bsoncrypt.bson, text),
        bsoncrypt.decrypt_get_text(bsoncrypt.bson, text),
        bsoncrypt.supply_customer_key(text, bytea),
        bsoncrypt.clear_customer_key(text),
        bsoncrypt.supplied_customer_keys() TO %s', role);
END $$;
COMMENT ON FUNCTION grant_decryption(regrole) IS
    'let a role decrypt fields encrypted with any key of the vault';

CREATE FUNCTION grant_key_admin(role regrole) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, bsoncrypt, pg_temp AS $$
BEGIN
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON bsoncrypt.key_vault TO %s', role);
    EXECUTE format('GRANT SELECT ON bsoncrypt.key_alt_names TO %s', role);
    EXECUTE format('GRANT SELECT ON bsoncrypt.key_audit TO %s', role);
    EXECUTE format('GRANT EXECUTE ON FUNCTION
        bsoncrypt.create_data_key(text, text[], bytea, bsoncrypt.bson),
        bsoncrypt.get_key(uuid),
        bsoncrypt.get_keys(),
        bsoncrypt.get_key_by_alt_name(text),
        bsoncrypt.delete_key(uuid),
        bsoncrypt.add_key_alt_name(uuid, text),
        bsoncrypt.remove_key_alt_name(uuid, text),
        bsoncrypt.import_key(bsoncrypt.bson),
        bsoncrypt.rewrap_many_data_key(bsoncrypt.bson, text, text),
        bsoncrypt._new_key_material(text, bytea, bsoncrypt.bson),
        bsoncrypt._find_master_key_version(bsoncrypt.bson, bytea),
        bsoncrypt._key_document(bsoncrypt.key_vault),
        bsoncrypt._parse_key_document(bsoncrypt.bson),
        bsoncrypt._cluster_apply_key_vault(text, uuid[], uuid[], text[], bytea[], bytea[], text[],
                                           bigint[], bigint[], integer[]),
        bsoncrypt.supply_customer_key(text, bytea),
        bsoncrypt.clear_customer_key(text),
        bsoncrypt.supplied_customer_keys(),
        bsoncrypt.key_audit_queue_status() TO %s', role);
END $$;
COMMENT ON FUNCTION grant_key_admin(regrole) IS
    'let a role manage data keys (MongoDB''s ClientEncryption key API); it cannot encrypt, decrypt or change master keys';
REVOKE EXECUTE ON FUNCTION grant_encryption(regrole), grant_decryption(regrole),
    grant_key_admin(regrole) FROM PUBLIC;
