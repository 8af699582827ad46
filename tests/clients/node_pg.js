// Weir against node-postgres (`pg`): simple queries, parameterised queries with untyped text
// parameters (the server infers their types), named statements reused, and every column type.
// Usage: node node_pg.js PORT
const { Client } = require('pg');

function check(what, cond, detail) {
  if (!cond) {
    console.log(`FAIL node-postgres: ${what} ${JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok   node-postgres: ${what}`);
}

(async () => {
  const client = new Client({ host: '127.0.0.1', port: Number(process.argv[2]), user: 'weir', database: 'weir' });
  await client.connect();
  const v = await client.query('SELECT version()');
  check('version()', v.rows[0].version.startsWith('PostgreSQL 15'), v.rows[0]);
  const tables = await client.query(
    "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 AND table_type IN ('BASE TABLE', 'VIEW') ORDER BY 1", ['public']);
  check('information_schema.tables', tables.rows.length >= 1, tables.rows);
  for (let i = 0; i < 3; i++) {
    const r = await client.query({ name: 'by_rows', text: 'SELECT count(*) AS n FROM weir_views WHERE rows_in >= $1', values: [0] });
    check(`named statement run ${i + 1}`, Number(r.rows[0].n) >= 1, r.rows);
  }
  const t = await client.query(`SELECT CAST(7 AS INT) AS i4, CAST(9000000000 AS BIGINT) AS i8, CAST(1.5 AS DOUBLE PRECISION) AS f8,
      CAST(12.34 AS DECIMAL(10,2)) AS num, 'hé' AS txt, true AS flag,
      CAST('2024-01-02T03:04:05Z' AS TIMESTAMPTZ) AS tstz, CAST('2024-01-02' AS DATE) AS d,
      INTERVAL '1 hour' AS iv, make_array(1, 2) AS arr, named_struct('score', 1.5) AS st`);
  const row = t.rows[0];
  check('int4/int8/float8', row.i4 === 7 && row.i8 === '9000000000' && row.f8 === 1.5, row);
  check('numeric/text/bool', row.num === '12.34' && row.txt === 'hé' && row.flag === true, row);
  check('timestamptz', row.tstz.toISOString() === '2024-01-02T03:04:05.000Z', row.tstz);
  check('arrays (int8 elements arrive as strings, as from PostgreSQL)', JSON.stringify(row.arr) === '["1","2"]', row.arr);
  check('struct as JSON text', JSON.parse(row.st).score === 1.5, row.st);
  check('interval', row.iv.hours === 1, row.iv);
  await client.query('BEGIN');
  await client.query('COMMIT');
  let failed = false;
  try { await client.query('SELECT * FROM no_such_table'); } catch (e) { failed = e.code === '42P01'; }
  check('undefined table is 42P01', failed, null);
  await client.end();
  console.log('node-postgres passed');
})().catch((e) => { console.log(`FAIL node-postgres: ${e.stack}`); process.exit(1); });
