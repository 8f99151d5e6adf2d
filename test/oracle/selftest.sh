#!/bin/bash
#
# selftest.sh
#	Self-test of mongocrypt_oracle: proves the oracle drives libmongocrypt
#	correctly, using the official FLE1 corpus and fresh keys.
#
# This file owns the oracle's self-test (run by `make -C test/oracle check`).
# It prints one "ok - ..." / "not ok - ..." line per check and ends with
# "N passed, M failed"; exit status is nonzero if any check failed.
#
# Corpus files come from test/data/fle-corpus (MongoDB specifications
# repository, source/client-side-encryption/corpus/, Apache License 2.0);
# set FLE_CORPUS_DIR to use another copy.  ORACLE_WRAPPER prefixes every
# oracle run, e.g. ORACLE_WRAPPER="valgrind -q --error-exitcode=99
# --leak-check=full --errors-for-leak-kinds=definite".  JSON is compared as BSON values
# (python3 json + a canonicalizer), never as text.

set -u

here=$(cd "$(dirname "$0")" && pwd)
oracle=$here/mongocrypt_oracle
export CORPUS=${FLE_CORPUS_DIR:-$here/../data/fle-corpus}
# the specification's LOCAL_MASTERKEY, which wraps corpus-key-local.json
CORPUS_MK=Mng0NCt4ZHVUYUJCa1kxNkVyNUR1QURhZ2h2UzR2d2RrZzh0cFBwM3R6NmdWMDFBMUN3YkQ5aXRRMkhGRGdQV09wOGVNYUMxT2k3NjZKelhaQmRCZGJkTXVyZG9uSjFk
CORPUS_KV=$CORPUS/corpus-key-local.json
CORPUS_KEY_ID=LOCALAAAAAAAAAAAAAAAAA==

export TMP
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
results=$TMP/results
: > "$results"

for f in "$oracle" "$CORPUS/corpus.json" "$CORPUS/corpus-encrypted.json" "$CORPUS_KV"; do
	if [ ! -e "$f" ]; then
		echo "selftest: missing $f (run make first?)" >&2
		exit 1
	fi
done

# ---------------------------------------------------------------------
# Python helpers: generate inputs, compare outputs as BSON.
# Each check prints "ok - ..." or "not ok - ...".
# ---------------------------------------------------------------------
read -r -d '' PYLIB <<'EOF'
import base64, json, os, sys, time

CORPUS = os.environ['CORPUS']
TMP = os.environ['TMP']

def canon_wrapper(x):
    """Comparable form of an extended-JSON $-wrapper (canonical or relaxed)."""
    if '$binary' in x:
        b = x['$binary']
        if isinstance(b, dict):
            return ('binary', int(b['subType'], 16), base64.b64decode(b['base64']))
        return ('binary', int(x['$type'], 16), base64.b64decode(b))
    if '$numberInt' in x:
        return ('int32', int(x['$numberInt']))
    if '$numberLong' in x:
        return ('int64', int(x['$numberLong']))
    if '$numberDouble' in x:
        return ('double', repr(float(x['$numberDouble'])))
    if '$numberDecimal' in x:
        return ('decimal', x['$numberDecimal'])
    if '$date' in x:
        d = x['$date']
        return ('date', int(d['$numberLong']) if isinstance(d, dict) else d)
    if '$oid' in x:
        return ('oid', x['$oid'].lower())
    if '$regularExpression' in x:
        r = x['$regularExpression']
        return ('regex', r['pattern'], ''.join(sorted(r['options'])))
    if '$timestamp' in x:
        return ('timestamp', x['$timestamp']['t'], x['$timestamp']['i'])
    if '$dbPointer' in x:
        p = x['$dbPointer']
        return ('dbpointer', p['$ref'], canon(p['$id']))
    if '$code' in x:
        return ('code', x['$code'], canon(x['$scope']) if '$scope' in x else None)
    if '$symbol' in x:
        return ('symbol', x['$symbol'])
    for t in ('$undefined', '$minKey', '$maxKey'):
        if t in x:
            return (t,)
    return ('doc', [(k, canon(v)) for k, v in x.items()])

def canon(x):
    """Comparable form of an extended-JSON value: BSON equality (ordered docs)."""
    if isinstance(x, dict):
        if x and next(iter(x)).startswith('$'):
            return canon_wrapper(x)
        return ('doc', [(k, canon(v)) for k, v in x.items()])
    if isinstance(x, list):
        return ('array', [canon(v) for v in x])
    if isinstance(x, bool):
        return ('bool', x)
    if isinstance(x, int):
        return ('int32' if -2**31 <= x < 2**31 else 'int64', x)
    if isinstance(x, float):
        return ('double', repr(x))
    if x is None:
        return ('null',)
    return ('string', x)

def report(ok, desc):
    print(('ok' if ok else 'not ok') + ' - ' + desc)

def read_lines(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip()]

def write_lines(path, docs):
    with open(path, 'w') as f:
        for d in docs:
            f.write(json.dumps(d) + '\n')

def load(name):
    with open(os.path.join(CORPUS, name)) as f:
        return json.load(f)

def local_entries(algo=None, allowed=None, identifier=None):
    return [(k, v) for k, v in load('corpus.json').items()
            if isinstance(v, dict) and v.get('kms') == 'local'
            and algo in (None, v['algo']) and allowed in (None, v['allowed'])
            and identifier in (None, v['identifier'])]

def is_error(doc):
    return (isinstance(doc, dict) and list(doc) == ['error']
            and isinstance(doc['error'], str) and doc['error'] != '')

def blob(doc):
    """Payload bytes of {"v": Binary subtype 6}, or None."""
    c = canon(doc.get('v')) if isinstance(doc, dict) else None
    if c and c[0] == 'binary' and c[1] == 6:
        return c[2]
    return None

def paired(name, n_expected, outputs):
    if len(outputs) != n_expected:
        report(False, '%s: %d output lines for %d inputs' % (name, len(outputs), n_expected))
    return outputs + [None] * (n_expected - len(outputs))

def prepare(name, entries, source):
    """Write TMP/name.in ({"v": value} lines) and TMP/name.names."""
    enc = load('corpus-encrypted.json')
    docs = [{'v': (enc[k]['value'] if source == 'cipher' else v['value'])}
            for k, v in entries]
    write_lines(os.path.join(TMP, name + '.in'), docs)
    with open(os.path.join(TMP, name + '.names'), 'w') as f:
        f.write(''.join(k + '\n' for k, v in entries))

def names(name):
    with open(os.path.join(TMP, name + '.names')) as f:
        return f.read().split()

def out(name, suffix='out'):
    return read_lines(os.path.join(TMP, '%s.%s' % (name, suffix)))

def check_det(name):
    enc = load('corpus-encrypted.json')
    ns = names(name)
    for k, got in zip(ns, paired(name, len(ns), out(name))):
        report(got is not None and canon(got) == canon({'v': enc[k]['value']}),
               'corpus %s: deterministic encryption reproduces the corpus blob' % k)

def check_rand_decrypt(name):
    plain = load('corpus.json')
    ns = names(name)
    for k, got in zip(ns, paired(name, len(ns), out(name))):
        report(got is not None and canon(got) == canon({'v': plain[k]['value']}),
               'corpus %s: corpus blob decrypts to the corpus value' % k)

def check_rand_fresh(name):
    plain = load('corpus.json')
    enc = load('corpus-encrypted.json')
    ns = names(name)
    fresh = paired(name, len(ns), out(name))
    dec = paired(name, len(ns), out(name, 'dec'))
    for k, f, d in zip(ns, fresh, dec):
        b = blob(f) if f else None
        ok = (b is not None and b[0] == 2
              and canon(f) != canon({'v': enc[k]['value']})
              and d is not None and canon(d) == canon({'v': plain[k]['value']}))
        report(ok, 'corpus %s: fresh random encryption differs from the corpus blob and decrypts back' % k)

def check_refused(name):
    ns = names(name)
    for k, got in zip(ns, paired(name, len(ns), out(name))):
        report(is_error(got), 'corpus %s: encryption refused with {"error": ...} (%s)'
               % (k, got.get('error') if isinstance(got, dict) else got))

def prepare_whole():
    """One document holding every local allowed entry, encrypted values."""
    enc = load('corpus-encrypted.json')
    doc = {'_id': 'client_side_encryption_corpus'}
    for k, v in local_entries(allowed=True):
        doc[k] = enc[k]
    write_lines(os.path.join(TMP, 'whole.in'), [doc])

def check_whole():
    plain = load('corpus.json')
    expect = {'_id': 'client_side_encryption_corpus'}
    for k, v in local_entries(allowed=True):
        expect[k] = plain[k]
    got = paired('whole', 1, out('whole'))[0]
    report(got is not None and canon(got) == canon(expect),
           'automatic decryption of one document with all %d local corpus blobs gives corpus.json'
           % (len(expect) - 1))

def new_master_key():
    print(base64.b64encode(os.urandom(96)).decode())

def new_key():
    return read_lines(os.path.join(TMP, 'key.json'))[0]

def key_id_b64():
    print(base64.b64encode(canon(new_key()['_id'])[2]).decode())

def check_new_key():
    lines = read_lines(os.path.join(TMP, 'key.json'))
    k = lines[0] if lines else {}
    now = time.time() * 1000
    checks = [
        (len(lines) == 1, 'one document'),
        (list(k) == ['_id', 'keyAltNames', 'keyMaterial', 'creationDate',
                     'updateDate', 'status', 'masterKey'], 'fields %s' % list(k)),
        (canon(k.get('_id'))[:2] == ('binary', 4) and len(canon(k['_id'])[2]) == 16,
         '_id is a 16-byte UUID'),
        (canon(k.get('keyMaterial'))[:2] == ('binary', 0) and len(canon(k['keyMaterial'])[2]) == 160,
         'keyMaterial is 160 bytes'),
        (canon(k.get('creationDate'))[0] == 'date' and abs(canon(k['creationDate'])[1] - now) < 600000,
         'creationDate is now'),
        (canon(k.get('updateDate')) == canon(k.get('creationDate')), 'updateDate == creationDate'),
        (canon(k.get('status')) == ('int32', 0), 'status is int32 0'),
        (k.get('masterKey') == {'provider': 'local'}, 'masterKey is {provider: "local"}'),
        (sorted(k.get('keyAltNames', [])) == ['other', 'selftest'], 'keyAltNames'),
    ]
    for ok, what in checks:
        report(ok, 'create-key: ' + what)

# (label, value, BSON type byte, deterministic allowed)
ROUNDTRIP = [
    ('string', 'hello, world', 0x02, True),
    ('empty string', '', 0x02, True),
    ('15-byte string (16-byte plaintext)', 'a' * 11, 0x02, True),
    ('unicode string', 'h\u00e9llo \u4e16\u754c \U0001f600', 0x02, True),
    ('long string', 'x' * 1000, 0x02, True),
    ('int32', {'$numberInt': '-42'}, 0x10, True),
    ('int64', {'$numberLong': '9007199254740993'}, 0x12, True),
    ('date', {'$date': {'$numberLong': '1700000000123'}}, 0x09, True),
    ('pre-1970 date', {'$date': {'$numberLong': '-86400000'}}, 0x09, True),
    ('objectId', {'$oid': '5f0c9c2ee6f1d2a0b1c2d3e4'}, 0x07, True),
    ('binary subtype 0', {'$binary': {'base64': 'AAECAwQF', 'subType': '00'}}, 0x05, True),
    ('binary subtype 4', {'$binary': {'base64': 'ASNFZ4mrze8BI0VniavN7w==', 'subType': '04'}}, 0x05, True),
    ('timestamp', {'$timestamp': {'t': 1700000000, 'i': 7}}, 0x11, True),
    ('regex', {'$regularExpression': {'pattern': '^a.*z$', 'options': 'i'}}, 0x0b, True),
    ('document', {'a': {'$numberInt': '1'}, 'b': ['x', {'c': None}], 'd': {'$numberDouble': '2.5'}}, 0x03, False),
    ('empty document', {}, 0x03, False),
    ('array', [{'$numberInt': '1'}, 'two', {'three': {'$numberLong': '3'}}], 0x04, False),
    ('double', {'$numberDouble': '-0.1'}, 0x01, False),
    ('bool', False, 0x08, False),
    ('decimal128', {'$numberDecimal': '3.14159'}, 0x13, False),
]

def prepare_roundtrip():
    write_lines(os.path.join(TMP, 'rt_det.in'), [{'v': v} for _, v, _, det in ROUNDTRIP if det])
    write_lines(os.path.join(TMP, 'rt_rand.in'), [{'v': v} for _, v, _, det in ROUNDTRIP])

def check_roundtrip(algo):
    key_id = canon(new_key()['_id'])[2]
    rows = [r for r in ROUNDTRIP if algo == 'rand' or r[3]]
    name = 'rt_' + algo
    a = paired(name, len(rows), out(name, 'alt.out'))
    i = paired(name, len(rows), out(name, 'id.out'))
    d = paired(name, len(rows), out(name, 'dec'))
    subtype = 1 if algo == 'det' else 2
    for (label, v, tbyte, _), ea, ei, dd in zip(rows, a, i, d):
        ba, bi = (blob(ea) if ea else None), (blob(ei) if ei else None)
        report(dd is not None and canon(dd) == canon({'v': v}),
               'round trip %s %s: decrypts back to the value' % (algo, label))
        report(ba is not None and ba[0] == subtype and ba[1:17] == key_id and ba[17] == tbyte,
               'round trip %s %s: blob header (subtype %d, key id, type 0x%02x)' % (algo, label, subtype, tbyte))
        if algo == 'det':
            report(ba is not None and ba == bi,
                   'round trip det %s: same blob by key id and by keyAltName' % label)
        else:
            report(ba is not None and bi is not None and ba != bi,
                   'round trip rand %s: two encryptions differ' % label)

REFUSE = {
    'det': [('null', None), ('double', {'$numberDouble': '1.5'}), ('document', {'a': 1}),
            ('array', [1]), ('bool', True), ('decimal128', {'$numberDecimal': '1'}),
            ('undefined', {'$undefined': True}), ('minKey', {'$minKey': 1})],
    'rand': [('null', None), ('undefined', {'$undefined': True}),
             ('minKey', {'$minKey': 1}), ('maxKey', {'$maxKey': 1})],
}

def prepare_refuse(algo):
    """Prohibited values, then an encrypted value (subtype 6), then a good string."""
    sub6 = read_lines(os.path.join(TMP, 'rt_rand.alt.out'))[0]['v']
    docs = [{'v': v} for _, v in REFUSE[algo]] + [{'v': sub6}, {'v': 'still working'}]
    write_lines(os.path.join(TMP, 'refuse_%s.in' % algo), docs)

def check_refuse(algo):
    labels = [l for l, _ in REFUSE[algo]] + ['Binary subtype 6']
    got = paired('refuse_' + algo, len(labels) + 1, out('refuse_' + algo))
    for label, g in zip(labels, got):
        report(is_error(g), 'refusal %s %s: {"error": ...} (%s)'
               % (algo, label, g.get('error') if isinstance(g, dict) else g))
    last = got[len(labels)]
    report(last is not None and blob(last) is not None,
           'refusal %s: the line after the refusals is still encrypted' % algo)

def prepare_decrypt_failures():
    good = read_lines(os.path.join(TMP, 'rt_rand.alt.out'))[0]['v']
    raw = bytearray(canon(good)[2])
    tampered = bytearray(raw); tampered[-1] ^= 1
    unknown = bytearray(raw); unknown[1:17] = b'\x99' * 16
    b6 = lambda b: {'$binary': {'base64': base64.b64encode(bytes(b)).decode(), 'subType': '06'}}
    docs = [{'v': b6(tampered)}, {'v': b6(unknown)}, {'v': good},
            {'a': {'$numberInt': '1'}, 'b': 'plain'},
            {'x': [good, {'y': good}], 'z': {'$numberInt': '5'}}]
    write_lines(os.path.join(TMP, 'decfail.in'), docs)

def check_decrypt_failures():
    v = ROUNDTRIP[0][1]
    got = paired('decfail', 5, out('decfail'))
    report(is_error(got[0]), 'decrypt: tampered tag gives {"error": ...} (%s)' % (got[0] or {}).get('error'))
    report(is_error(got[1]), 'decrypt: unknown key id gives {"error": ...} (%s)' % (got[1] or {}).get('error'))
    report(got[2] is not None and canon(got[2]) == canon({'v': v}),
           'decrypt: a good line after failures still decrypts')
    report(got[3] is not None and canon(got[3]) == canon({'a': {'$numberInt': '1'}, 'b': 'plain'}),
           'decrypt: a document without encrypted values comes back unchanged')
    report(got[4] is not None and canon(got[4]) == canon({'x': [v, {'y': v}], 'z': {'$numberInt': '5'}}),
           'decrypt: encrypted values nested in arrays and documents are decrypted')

def check_wrong_master_key():
    got = paired('wrongmk', 1, out('wrongmk'))[0]
    report(is_error(got), 'decrypt: key-vault key under another master key gives {"error": ...} (%s)'
           % (got or {}).get('error'))

def check_bench():
    got = paired('bench', 1, out('bench'))[0] or {}
    fields = ['det_encrypt_per_s', 'rand_encrypt_per_s', 'decrypt_per_s']
    report(list(got) == fields and all(isinstance(got[f], (int, float)) and got[f] > 0 for f in fields),
           'bench: %s' % json.dumps(got))
EOF

py()
{
	python3 -c "$PYLIB"$'\n'"$1" || echo "not ok - python helper failed: $1"
}

# record a failed check from shell
fail()
{
	echo "not ok - $1"
}

# oracle_run DESC INFILE OUTFILE ARGS...: the oracle must exit 0
oracle_run()
{
	local desc=$1 in=$2 outf=$3
	shift 3
	if ! ${ORACLE_WRAPPER:-} "$oracle" "$@" < "$in" > "$outf" 2> "$outf.err"; then
		fail "$desc: oracle exited with an error: $(head -c 300 "$outf.err")"
	fi
}

# expect_usage_error DESC INFILE ARGS...: exit 1, message on stderr, no stdout
expect_usage_error()
{
	local desc=$1 in=$2 rc
	shift 2
	${ORACLE_WRAPPER:-} "$oracle" "$@" < "$in" > "$TMP/usage.out" 2> "$TMP/usage.err"
	rc=$?
	if [ $rc -eq 1 ] && [ -s "$TMP/usage.err" ] && [ ! -s "$TMP/usage.out" ]; then
		echo "ok - $desc: exit 1 ($(head -n1 "$TMP/usage.err"))"
	else
		fail "$desc: exit $rc, stderr '$(head -c 200 "$TMP/usage.err")'"
	fi
}

corpus_key_opt()
{
	if [ "$1" = id ]; then
		echo "--key-id-b64 $CORPUS_KEY_ID"
	else
		echo "--key-alt-name local"
	fi
}

# ---------------------------------------------------------------------
# 1. The official corpus, local key
# ---------------------------------------------------------------------
corpus_checks()
{
	local ident n

	for ident in id altname; do
		# deterministic: exact bytes
		n=det_$ident
		py "prepare('$n', local_entries('det', True, '$ident'), 'plain')"
		oracle_run "$n" "$TMP/$n.in" "$TMP/$n.out" encrypt --master-key "$CORPUS_MK" \
			--key-vault "$CORPUS_KV" $(corpus_key_opt $ident) --algorithm det
		py "check_det('$n')"

		# random: corpus blobs decrypt; fresh encryptions differ and decrypt back
		n=randdec_$ident
		py "prepare('$n', local_entries('rand', True, '$ident'), 'cipher')"
		oracle_run "$n" "$TMP/$n.in" "$TMP/$n.out" decrypt --master-key "$CORPUS_MK" \
			--key-vault "$CORPUS_KV"
		py "check_rand_decrypt('$n')"

		n=randenc_$ident
		py "prepare('$n', local_entries('rand', True, '$ident'), 'plain')"
		oracle_run "$n" "$TMP/$n.in" "$TMP/$n.out" encrypt --master-key "$CORPUS_MK" \
			--key-vault "$CORPUS_KV" $(corpus_key_opt $ident) --algorithm rand
		oracle_run "$n decrypt" "$TMP/$n.out" "$TMP/$n.dec" decrypt --master-key "$CORPUS_MK" \
			--key-vault "$CORPUS_KV"
		py "check_rand_fresh('$n')"

		# prohibited values
		for algo in det rand; do
			n=refused_${algo}_$ident
			py "prepare('$n', local_entries('$algo', False, '$ident'), 'plain')"
			oracle_run "$n" "$TMP/$n.in" "$TMP/$n.out" encrypt --master-key "$CORPUS_MK" \
				--key-vault "$CORPUS_KV" $(corpus_key_opt $ident) --algorithm $algo
			py "check_refused('$n')"
		done
	done

	py "prepare_whole()"
	oracle_run whole "$TMP/whole.in" "$TMP/whole.out" decrypt --master-key "$CORPUS_MK" \
		--key-vault "$CORPUS_KV"
	py "check_whole()"
}

# ---------------------------------------------------------------------
# 2. A fresh key: create-key -> encrypt -> decrypt
# ---------------------------------------------------------------------
fresh_key_checks()
{
	local mk key_id vault=$TMP/vault.json algo

	mk=$(py "new_master_key()")
	oracle_run create-key /dev/null "$TMP/key.json" create-key --master-key "$mk" \
		--alt-name selftest --alt-name other
	py "check_new_key()"
	key_id=$(py "key_id_b64()")

	# the vault also holds the (multi-line) corpus key: only matches are fed
	cat "$CORPUS_KV" "$TMP/key.json" > "$vault"

	py "prepare_roundtrip()"
	for algo in det rand; do
		oracle_run "rt_$algo alt" "$TMP/rt_$algo.in" "$TMP/rt_$algo.alt.out" encrypt \
			--master-key "$mk" --key-vault "$vault" --key-alt-name selftest --algorithm $algo
		oracle_run "rt_$algo id" "$TMP/rt_$algo.in" "$TMP/rt_$algo.id.out" encrypt \
			--master-key "$mk" --key-vault "$vault" --key-id-b64 "$key_id" --algorithm $algo
		oracle_run "rt_$algo decrypt" "$TMP/rt_$algo.alt.out" "$TMP/rt_$algo.dec" decrypt \
			--master-key "$mk" --key-vault "$vault"
		py "check_roundtrip('$algo')"
	done

	for algo in det rand; do
		py "prepare_refuse('$algo')"
		oracle_run "refuse_$algo" "$TMP/refuse_$algo.in" "$TMP/refuse_$algo.out" encrypt \
			--master-key "$mk" --key-vault "$vault" --key-alt-name other --algorithm $algo
		py "check_refuse('$algo')"
	done

	py "prepare_decrypt_failures()"
	oracle_run decfail "$TMP/decfail.in" "$TMP/decfail.out" decrypt \
		--master-key "$mk" --key-vault "$vault"
	py "check_decrypt_failures()"

	head -n1 "$TMP/rt_rand.alt.out" > "$TMP/wrongmk.in"
	oracle_run wrongmk "$TMP/wrongmk.in" "$TMP/wrongmk.out" decrypt \
		--master-key "$CORPUS_MK" --key-vault "$TMP/key.json"
	py "check_wrong_master_key()"
}

# ---------------------------------------------------------------------
# 3. Usage errors and bench
# ---------------------------------------------------------------------
usage_and_bench_checks()
{
	echo '{"v": "x"}' > "$TMP/one.in"
	echo '{"v": ' > "$TMP/bad.in"
	expect_usage_error "master key of 95 bytes" "$TMP/one.in" create-key \
		--master-key "$(head -c 95 /dev/zero | base64 -w0)"
	expect_usage_error "master key not base64" "$TMP/one.in" create-key --master-key 'a*b='
	expect_usage_error "encrypt without --algorithm" "$TMP/one.in" encrypt \
		--master-key "$CORPUS_MK" --key-vault "$CORPUS_KV" --key-alt-name local
	expect_usage_error "encrypt with both key id and alt name" "$TMP/one.in" encrypt \
		--master-key "$CORPUS_MK" --key-vault "$CORPUS_KV" --key-alt-name local \
		--key-id-b64 "$CORPUS_KEY_ID" --algorithm det
	expect_usage_error "missing key-vault file" "$TMP/one.in" decrypt \
		--master-key "$CORPUS_MK" --key-vault "$TMP/nonexistent"
	expect_usage_error "unparseable input line" "$TMP/bad.in" decrypt \
		--master-key "$CORPUS_MK" --key-vault "$CORPUS_KV"
	expect_usage_error "unknown command" "$TMP/one.in" frobnicate --master-key "$CORPUS_MK"

	oracle_run bench /dev/null "$TMP/bench.out" bench --master-key "$CORPUS_MK" \
		--key-vault "$CORPUS_KV" --key-alt-name local --count 300
	py "check_bench()"
}

{
	corpus_checks
	fresh_key_checks
	usage_and_bench_checks
} | tee "$results"

passed=$(grep -c '^ok' "$results")
failed=$(grep -c '^not ok' "$results")
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
