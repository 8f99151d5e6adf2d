-- bsoncrypt demo: run by scripts/demo.sh on a throwaway cluster.
\pset footer off
CREATE EXTENSION bsoncrypt;
SET search_path = bsoncrypt, public;

\echo '== BSON documents, written as MongoDB Extended JSON'
CREATE TABLE patients (id serial PRIMARY KEY, doc bson);
INSERT INTO patients (doc) VALUES
  ('{"name": "Ann Smith", "ssn": "123-45-6789", "born": {"$date": "1980-04-01T00:00:00Z"}, "visits": {"$numberLong": "12"}}'),
  ('{"name": "Bob Jones", "ssn": "987-65-4321", "born": {"$date": "1975-11-30T00:00:00Z"}, "visits": {"$numberLong": "3"}}');
SELECT id, doc FROM patients ORDER BY id;

\echo '== fields by path, and the same document in canonical Extended JSON'
SELECT id, doc ->> 'name' AS name, doc -> 'ssn' AS ssn FROM patients ORDER BY id;
SELECT bson_to_json(doc, canonical => true) FROM patients WHERE id = 1;
