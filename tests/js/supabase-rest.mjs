// supabase-js's data client (@supabase/supabase-js → postgrest-js) against a
// running Basalt whose fixture tests/tests/supabase_js.rs created: the
// idioms of PostgREST 12's documentation, each answer checked. BASALT_URL,
// SERVICE_KEY and ANON_KEY come from the Rust suite.
import { createClient } from '@supabase/supabase-js'
import ws from 'ws'
import { assert, check, finish, ok } from './harness.mjs'

const url = process.env.BASALT_URL
const db = createClient(url, process.env.SERVICE_KEY, { auth: { persistSession: false }, realtime: { transport: ws } })

await check('insert().select().single() answers the object', async () => {
  const row = ok('insert', await db.from('items').insert({ name: 'pen' }).select().single())
  assert.equal(Array.isArray(row), false)
  assert.equal(row.name, 'pen')
  assert.equal(typeof row.id, 'number')
})

await check('update, upsert and delete with select().single() answer the object', async () => {
  const { id } = ok('insert', await db.from('items').insert({ name: 'cup' }).select('id').single())
  const updated = ok('update', await db.from('items').update({ qty: 5 }).eq('id', id).select().single())
  assert.deepEqual([updated.name, updated.qty], ['cup', 5])
  const upserted = ok('upsert', await db.from('items').upsert({ id, name: 'mug', qty: 6 }).select().single())
  assert.deepEqual([upserted.name, upserted.qty], ['mug', 6])
  const deleted = ok('delete', await db.from('items').delete().eq('id', id).select('name').single())
  assert.deepEqual(deleted, { name: 'mug' })
})

await check('single() on a write of two rows is refused with 406 and changes nothing', async () => {
  ok('insert', await db.from('items').insert([{ name: 'twin', qty: 1 }, { name: 'twin', qty: 1 }]))
  const result = await db.from('items').update({ qty: 9 }).eq('name', 'twin').select().single()
  assert.equal(result.status, 406, JSON.stringify(result))
  assert.notEqual(result.error, null)
  const rows = ok('read', await db.from('items').select('qty').eq('name', 'twin'))
  assert.deepEqual(rows, [{ qty: 1 }, { qty: 1 }])
})

await check('upsert answers 201 when it creates a row and 200 when it only merges', async () => {
  const created = await db.from('items').upsert({ id: 900, name: 'new' })
  assert.equal(created.status, 201, JSON.stringify(created))
  const merged = await db.from('items').upsert({ id: 900, name: 'merged' })
  assert.equal(merged.status, 200, JSON.stringify(merged))
})

await check('count on insert, update and delete', async () => {
  const inserted = await db.from('items').insert([{ name: 'c1' }, { name: 'c2' }], { count: 'exact' })
  assert.equal(inserted.error, null, JSON.stringify(inserted.error))
  assert.equal(inserted.count, 2)
  const updated = await db.from('items').update({ qty: 3 }, { count: 'exact' }).in('name', ['c1', 'c2'])
  assert.equal(updated.count, 2)
  const deleted = await db.from('items').delete({ count: 'exact' }).in('name', ['c1', 'c2'])
  assert.equal(deleted.count, 2)
})

await check('defaultToNull: false fills identity and default columns', async () => {
  const rows = ok('insert', await db.from('items').insert([{ name: 'd1' }, { name: 'd2', qty: 7 }], { defaultToNull: false }).select('id,name,qty'))
  assert.equal(rows.length, 2)
  assert.ok(rows.every((row) => typeof row.id === 'number'), JSON.stringify(rows))
  assert.deepEqual(rows.map((row) => row.qty), [1, 7])
  const always = ok('identity always', await db.from('tickets').insert([{ title: 'a' }, { title: 'b' }], { defaultToNull: false }).select('id,title'))
  assert.ok(always.every((row) => typeof row.id === 'number'), JSON.stringify(always))
})

await check('nxl is &> and nxr is &<', async () => {
  const nxl = ok('nxl', await db.from('shifts').select('id').filter('hours', 'nxl', '[10,30)').order('id'))
  assert.deepEqual(nxl.map((r) => r.id), [2, 3, 4])
  const nxr = ok('nxr', await db.from('shifts').select('id').filter('hours', 'nxr', '[0,14)').order('id'))
  assert.deepEqual(nxr.map((r) => r.id), [1])
})

await check('one-to-one embeds answer an object, from either side', async () => {
  const countries = ok('read', await db.from('countries').select('name,capitals(city_id),profiles(user_name)').eq('name', 'France').single())
  assert.deepEqual(countries.capitals, { city_id: 1 })
  assert.deepEqual(countries.profiles, { user_name: 'marianne' })
  const capital = ok('read', await db.from('capitals').select('countries(name)').eq('city_id', 1).single())
  assert.deepEqual(capital.countries, { name: 'France' })
})

await check('a self-reference embeds the children, and by hint the parent', async () => {
  const boss = ok('children', await db.from('employees').select('name,supervisees:employees(name)').eq('name', 'Ada').single())
  assert.deepEqual(boss.supervisees.map((e) => e.name).sort(), ['Bob', 'Cy'])
  const worker = ok('parent', await db.from('employees').select('name,supervisor:employees!supervisor_id(name)').eq('name', 'Bob').single())
  assert.deepEqual(worker.supervisor, { name: 'Ada' })
})

await check('two embeds under one name are refused', async () => {
  const result = await db.from('films').select('title,actors(name),actors(id)')
  assert.equal(result.status, 400, JSON.stringify(result))
  assert.match(result.error.message + result.error.details, /more than once/)
})

await check('an embed with no fields filters and adds nothing', async () => {
  const rows = ok('read', await db.from('films').select('title,actors!inner()').eq('actors.name', 'Keanu').order('title'))
  assert.deepEqual(rows, [{ title: 'John Wick' }, { title: 'The Matrix' }])
})

await check('rpc: count, head and max-affected', async () => {
  const counted = await db.rpc('film_titles', {}, { count: 'exact' })
  assert.equal(counted.error, null, JSON.stringify(counted.error))
  assert.equal(counted.count, 3)
  assert.equal(counted.data.length, 3)
  const head = await db.rpc('film_titles', {}, { head: true, count: 'exact' })
  assert.equal(head.error, null, JSON.stringify(head.error))
  assert.equal(head.count, 3)
  assert.equal(head.data, null)
  // Counted in the same statement: a function that writes runs once.
  const hit = await db.rpc('hit', {}, { count: 'exact' })
  assert.equal(hit.count, 1, JSON.stringify(hit))
  const hits = await db.from('hits').select('id', { count: 'exact', head: true })
  assert.equal(hits.count, 1, 'hit() ran once')
  const capped = await db.rpc('touch_items', {}).maxAffected(1)
  assert.equal(capped.status, 400, JSON.stringify(capped))
})

await check('an ambiguous embed is 300 with the candidates; a hint picks one', async () => {
  const ambiguous = await db.from('matches').select('id,teams(name)')
  assert.equal(ambiguous.status, 300, JSON.stringify(ambiguous))
  assert.equal(ambiguous.error.code, 'PGRST201')
  assert.match(ambiguous.error.hint, /teams!matches_home_id_fkey/)
  const picked = ok('hint', await db.from('matches').select('id,home:teams!home_id(name)').single())
  assert.deepEqual(picked.home, { name: 'Reds' })
})

await check('embedding by foreign-key column and by constraint name', async () => {
  const byColumn = ok('column', await db.from('matches').select('id,away_id(name)').single())
  assert.deepEqual(byColumn.away_id, { name: 'Blues' })
  const byConstraint = ok('constraint', await db.from('teams').select('name,matches_home_id_fkey(id)').eq('id', 1).single())
  assert.deepEqual(byConstraint.matches_home_id_fkey, [{ id: 1 }])
})

await check('spread embeds flatten a to-one row, and refuse a to-many one', async () => {
  const row = ok('spread', await db.from('cities').select('name,...countries(country:name)').eq('id', 3).single())
  assert.deepEqual(row, { name: 'Lima', country: 'Peru' })
  const many = await db.from('countries').select('name,...cities(name)')
  assert.equal(many.status, 400)
  assert.equal(many.error.code, 'PGRST119')
})

await check('stripNulls() leaves null keys out', async () => {
  const rows = ok('stripped', await db.from('matches').select('id,note').stripNulls())
  assert.deepEqual(rows, [{ id: 1 }])
  const plain = ok('plain', await db.from('matches').select('id,note'))
  assert.deepEqual(plain, [{ id: 1, note: null }])
})

await check('rollback(): the write runs and answers, and nothing stays', async () => {
  const ghost = ok('insert', await db.from('items').insert({ name: 'ghost' }).select('name').single().rollback())
  assert.deepEqual(ghost, { name: 'ghost' })
  const found = ok('read', await db.from('items').select('id').eq('name', 'ghost'))
  assert.deepEqual(found, [])
})

await check('explain(): the query plan as JSON or text, for the service_role key', async () => {
  const plan = ok('explain', await db.from('countries').select('name').eq('id', 1).explain({ format: 'json' }))
  assert.ok(Array.isArray(plan) && plan[0].Plan, JSON.stringify(plan))
  const text = ok('explain text', await db.from('countries').select('name').eq('id', 1).explain())
  assert.equal(typeof text, 'string')
  assert.match(text, /Index Scan using countries_pkey on countries/)
  const analyzed = ok('explain analyze', await db.from('countries').select('name').explain({ analyze: true, verbose: true }))
  assert.match(analyzed, /actual time=.*\n[\s\S]*Output:/)
  const anon = createClient(url, process.env.ANON_KEY, { auth: { persistSession: false }, realtime: { transport: ws } })
  const refused = await anon.from('countries').select('name').explain({ format: 'json' })
  assert.equal(refused.status, 406)
})

await check('computed fields: a function of the row, selected, filtered and ordered like a column', async () => {
  const rows = ok('computed', await db.from('actors').select('name,shout').neq('shout', 'AUDREY!').order('shout'))
  assert.deepEqual(rows, [{ name: 'Keanu', shout: 'KEANU!' }])
  const all = ok('star', await db.from('actors').select('*').eq('id', 1).single())
  assert.ok(!('shout' in all), 'not part of *')
})

await check('computed relationships: a function of the row embedded like a relationship', async () => {
  const france = ok('to-one', await db.from('countries').select('name,capital_city(name)').eq('id', 1).single())
  assert.deepEqual(france, { name: 'France', capital_city: { name: 'Paris' } })
  const keanu = ok('to-many', await db.from('actors').select('name,filmography(title)').eq('id', 1).order('title', { referencedTable: 'filmography' }).single())
  assert.deepEqual(keanu.filmography, [{ title: 'John Wick' }, { title: 'The Matrix' }])
  const inner = ok('inner', await db.from('actors').select('name,filmography!inner()').eq('filmography.title', 'Amelie'))
  assert.deepEqual(inner, [{ name: 'Audrey' }])
})

await check('views embed through the foreign keys of the tables they show', async () => {
  const novel = ok('view to view', await db.from('novels').select('title,writers(name)').eq('id', 3).single())
  assert.deepEqual(novel, { title: 'War and Peace', writers: { name: 'Tolstoy' } })
  const writer = ok('reverse', await db.from('writers').select('name,novels(title)').eq('id', 1).order('id', { referencedTable: 'novels' }).single())
  assert.deepEqual(writer, { name: 'Austen', novels: [{ title: 'Emma' }, { title: 'Persuasion' }] })
  const early = ok('view of a view, key renamed', await db.from('early_novels').select('title,writers(name)').order('id'))
  assert.deepEqual(early.map((n) => n.writers.name), ['Austen', 'Austen'])
})

await check('a computed relationship needs execute on its function', async () => {
  const anon = createClient(url, process.env.ANON_KEY, { auth: { persistSession: false }, realtime: { transport: ws } })
  const refused = await anon.from('countries').select('name,capital_city(name)').eq('id', 1)
  assert.ok([401, 403].includes(refused.status), JSON.stringify(refused))
  const granted = await fetch(`${url}/admin/v1/policies`, {
    method: 'POST',
    headers: { apikey: process.env.SERVICE_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ subject: 'anon', object: 'function:public.capital_city', action: 'execute' }),
  })
  assert.equal(granted.status, 201, await granted.text())
  const allowed = ok('allowed', await anon.from('countries').select('name,capital_city(name)').eq('id', 1).single())
  assert.deepEqual(allowed, { name: 'France', capital_city: { name: 'Paris' } })
})

await check('rpc: a single unnamed json, text or bytea argument takes the whole body', async () => {
  assert.deepEqual(ok('json object', await db.rpc('echo_json', { any: 'thing', n: 1 })), { any: 'thing', n: 1 })
  assert.deepEqual(ok('json array', await db.rpc('echo_json', [1, 2])), [1, 2])
  const headers = { apikey: process.env.SERVICE_KEY, authorization: `Bearer ${process.env.SERVICE_KEY}` }
  const text = await fetch(`${url}/rest/v1/rpc/shout_text`, { method: 'POST', headers: { ...headers, 'content-type': 'text/plain' }, body: 'hello' })
  assert.equal(await text.json(), 'HELLO')
  const bytes = await fetch(`${url}/rest/v1/rpc/byte_length`, { method: 'POST', headers: { ...headers, 'content-type': 'application/octet-stream' }, body: new Uint8Array([0, 1, 2, 255]) })
  assert.equal(await bytes.json(), 4)
})

await check('rpc: overloads are told apart by argument names, and an ambiguous call is 300', async () => {
  assert.equal(ok('two', await db.rpc('pick', { a: 1, b: 2 })), 'two')
  const ambiguous = await db.rpc('pick', { a: 1 })
  assert.equal(ambiguous.status, 300, JSON.stringify(ambiguous))
  assert.equal(ambiguous.error.code, 'PGRST203')
  assert.match(ambiguous.error.message + ambiguous.error.details, /pick\(a integer\).*pick\(a text\)/)
})

await check('rpc: variadic and composite arguments', async () => {
  assert.equal(ok('variadic post', await db.rpc('total', { nums: [1, 2, 3] })), 6)
  assert.equal(ok('variadic get', await db.rpc('total', { nums: [4, 5] }, { get: true })), 9)
  const repeated = await fetch(`${url}/rest/v1/rpc/total?nums=1&nums=10`, { headers: { apikey: process.env.SERVICE_KEY } })
  assert.equal(await repeated.json(), 11)
  assert.equal(ok('composite', await db.rpc('add_pair', { p: { x: 2, y: 3 } })), 5)
  assert.deepEqual(ok('a row of a table', await db.rpc('both_cases', { a: { id: 9, name: 'Zed' } })), ['ZED', 'zed'])
})

await check('rpc: select, filters and order on every result shape', async () => {
  const table = ok('returns table', await db.rpc('city_stats').select('cities').eq('country', 'France'))
  assert.deepEqual(table, [{ cities: 2 }])
  const ordered = ok('order', await db.rpc('city_stats').order('cities', { ascending: false }))
  assert.deepEqual(ordered.map((r) => r.country), ['France', 'Peru'])
  assert.equal(ok('scalar', await db.rpc('film_count')), 3)
  assert.deepEqual(ok('setof scalar', await db.rpc('numbers').gt('pgrst_scalar', 3)), [4, 5])
  assert.deepEqual(ok('scalar order', await db.rpc('numbers').order('pgrst_scalar', { ascending: false }).limit(2)), [5, 4])
  assert.deepEqual(ok('one row', await db.rpc('first_film').select('title')), { title: 'The Matrix' })
  assert.deepEqual(ok('unnamed OUT columns', await db.rpc('pair_out')), { column1: 1, column2: 'a' })
})

await check('aggregates: over every row, grouped by the other columns, with embeds and inside them', async () => {
  const all = ok('all', await db.from('orders').select('amount.sum(),count(),most:amount.max()::text').single())
  assert.deepEqual(all, { sum: 32.5, count: 3, most: '15.5' })
  const grouped = ok('grouped', await db.from('orders').select('country_id,total:amount.sum()').order('country_id'))
  assert.deepEqual(grouped, [{ country_id: 1, total: 25.5 }, { country_id: 2, total: 7 }])
  const byCountry = ok('to-one embed', await db.from('orders').select('amount.sum(),countries(name)'))
  assert.deepEqual(byCountry.sort((a, b) => a.sum - b.sum), [{ sum: 7, countries: { name: 'Peru' } }, { sum: 25.5, countries: { name: 'France' } }])
  const inside = ok('inside an embed', await db.from('countries').select('name,orders(amount.avg(),count())').order('id'))
  assert.deepEqual(inside, [{ name: 'France', orders: [{ avg: 12.75, count: 2 }] }, { name: 'Peru', orders: [{ avg: 7, count: 1 }] }])
  const cast = ok('input cast', await db.from('orders').select('amount::int.sum()').single())
  assert.deepEqual(cast, { sum: 33 })
  const written = await db.from('orders').insert({ id: 9, country_id: 1, amount: 1 }).select('amount.sum()')
  assert.equal(written.status, 400, 'a write answers its rows, not aggregates')
  assert.deepEqual(ok('rolled back', await db.from('orders').select('id').eq('id', 9)), [])
})

await check('csv(): values in PostgreSQL text forms, RFC 4180 quoting, null apart from the empty string', async () => {
  const text = ok('csv', await db.from('samples').select('*').order('id').csv())
  assert.equal(text, 'id,flag,tags,at,doc,note\n1,t,"{a,""b c""}",2024-01-02 10:00:00,"{""k"": [1, 2]}",""\n2,f,,,,"say ""hi"", then\ngo"\n')
})

await check('geojson(): a FeatureCollection with PostGIS, else 406', async () => {
  if (process.env.POSTGIS !== '1') {
    const refused = await db.from('countries').select('name').geojson()
    assert.equal(refused.status, 406, JSON.stringify(refused))
    return
  }
  const noGeometry = await db.from('places').select('name').geojson()
  assert.equal(noGeometry.status, 406, JSON.stringify(noGeometry))
  const castAway = await db.from('places').select('name,location::text').geojson()
  assert.equal(castAway.status, 406, JSON.stringify(castAway))
  const collection = ok('geojson', await db.from('places').select('name,location').geojson())
  assert.deepEqual(collection, {
    type: 'FeatureCollection',
    features: [{ type: 'Feature', geometry: { type: 'Point', coordinates: [2.2945, 48.8584] }, properties: { name: 'Eiffel Tower' } }]
  })
})

await check('errors carry PostgREST codes', async () => {
  const none = await db.from('countries').select().eq('name', 'Atlantis').single()
  assert.equal(none.status, 406)
  assert.equal(none.error.code, 'PGRST116')
  const maybe = await db.from('countries').select().eq('name', 'Atlantis').maybeSingle()
  assert.deepEqual([maybe.error, maybe.data], [null, null])
  const several = await db.from('countries').select().maybeSingle()
  assert.equal(several.error?.code, 'PGRST116')
  const duplicate = await db.from('countries').insert({ id: 1, name: 'France' })
  assert.equal(duplicate.status, 409)
  assert.equal(duplicate.error.code, '23505')
  assert.match(duplicate.error.message, /duplicate key value violates unique constraint/)
  const column = await db.from('countries').select('nme')
  assert.equal(column.error.code, '42703')
  const relation = await db.from('countries').select('name,planets(name)')
  assert.equal(relation.error.code, 'PGRST200')
  const fn = await db.rpc('no_such_function')
  assert.equal(fn.status, 404)
  assert.equal(fn.error.code, 'PGRST202')
  const table = await db.from('no_such_table').select()
  assert.equal(table.error.code, '42P01')
})

finish('supabase-js rest')
