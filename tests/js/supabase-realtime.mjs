// supabase-js's realtime client (@supabase/supabase-js → realtime-js, its
// default Phoenix serializer vsn 2.0.0) against a running Basalt whose
// fixture tests/tests/supabase_js.rs created: postgres_changes filtered per
// row by policies, broadcast and presence. BASALT_URL, SERVICE_KEY and
// ANON_KEY come from the Rust suite.
import { createClient } from '@supabase/supabase-js'
import ws from 'ws'
import { createHmac } from 'node:crypto'
import { assert, check, finish, ok } from './harness.mjs'

const url = process.env.BASALT_URL
const options = { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: ws } }
const service = createClient(url, process.env.SERVICE_KEY, options)
const client = createClient(url, process.env.ANON_KEY, options)

const until = (what, predicate, ms = 5000) => new Promise((resolve, reject) => {
  const started = Date.now()
  const poll = () => {
    const value = predicate()
    if (value) return resolve(value)
    if (Date.now() - started > ms) return reject(new Error(`timed out waiting for ${what}`))
    setTimeout(poll, 25)
  }
  poll()
})
const subscribed = (channel) => new Promise((resolve, reject) => {
  channel.subscribe((status, error) => {
    if (status === 'SUBSCRIBED') resolve()
    else if (status !== 'CLOSED') reject(new Error(`${status}: ${error?.message}`))
  })
})

await check('postgres_changes: inserts, updates and deletes, per binding and per row', async () => {
  const all = []
  const roomB = []
  const channel = client.channel('db')
    .on('postgres_changes', { event: '*', schema: 'public', table: 'messages' }, (payload) => all.push(payload))
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages', filter: 'room=eq.b' }, (payload) => roomB.push(payload))
  await subscribed(channel)
  const [first] = ok('insert', await service.from('messages').insert([{ room: 'a', body: 'one' }, { room: 'secret', body: 'hidden' }, { room: 'b', body: 'two' }]).select('id'))
  ok('update', await service.from('messages').update({ body: 'uno' }).eq('id', first.id))
  ok('delete', await service.from('messages').delete().eq('id', first.id))
  await until('four changes', () => all.length >= 4)
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.deepEqual(all.map((p) => [p.eventType, p.new.body ?? null]), [['INSERT', 'one'], ['INSERT', 'two'], ['UPDATE', 'uno'], ['DELETE', null]])
  assert.equal(all[0].schema, 'public')
  assert.equal(all[0].table, 'messages')
  assert.equal(typeof all[0].new.id, 'number')
  assert.ok(all[0].commit_timestamp)
  assert.equal(all[2].old.body, 'one')
  assert.equal(all[3].old.id, first.id)
  assert.deepEqual(roomB.map((p) => p.new.body), ['two'])
  assert.ok(!all.some((p) => p.new.room === 'secret'), 'a row the policy hides is never sent')
  await client.removeChannel(channel)
})

await check('postgres_changes without a table: every captured table the caller may read', async () => {
  const seen = []
  const channel = client.channel('db')
    .on('postgres_changes', { event: 'INSERT', schema: 'public' }, (payload) => seen.push(payload))
  await subscribed(channel)
  ok('insert note', await service.from('notes').insert({ body: 'not for anon' }))
  ok('insert message', await service.from('messages').insert({ room: 'c', body: 'wildcard' }))
  await until('the message', () => seen.length >= 1)
  await new Promise((resolve) => setTimeout(resolve, 300))
  assert.deepEqual(seen.map((p) => [p.table, p.new.body]), [['messages', 'wildcard']])
  await client.removeChannel(channel)
})

await check('broadcast to the sender itself, acknowledged', async () => {
  const received = []
  const channel = client.channel('chat', { config: { broadcast: { self: true, ack: true } } })
    .on('broadcast', { event: 'msg' }, (payload) => received.push(payload))
  await subscribed(channel)
  const status = await channel.send({ type: 'broadcast', event: 'msg', payload: { text: 'hi' } })
  assert.equal(status, 'ok')
  await until('the broadcast', () => received.length === 1)
  assert.deepEqual(received[0].payload, { text: 'hi' })
  assert.equal(received[0].event, 'msg')
  await client.removeChannel(channel)
})

await check('binary broadcast payloads arrive as bytes', async () => {
  const received = []
  const channel = client.channel('chat', { config: { broadcast: { self: true, ack: true } } })
    .on('broadcast', { event: 'blob' }, (payload) => received.push(payload))
  await subscribed(channel)
  const bytes = new Uint8Array([1, 2, 0, 255]).buffer
  assert.equal(await channel.send({ type: 'broadcast', event: 'blob', payload: bytes }), 'ok')
  await until('the binary broadcast', () => received.length === 1)
  assert.ok(received[0].payload instanceof ArrayBuffer, String(received[0].payload))
  assert.deepEqual([...new Uint8Array(received[0].payload)], [1, 2, 0, 255])
  assert.equal(received[0].event, 'blob')
  await client.removeChannel(channel)
})

await check('presence: track, then the state shows the member', async () => {
  const channel = client.channel('lobby', { config: { presence: { key: 'ann' } } })
  let synced = 0
  channel.on('presence', { event: 'sync' }, () => { synced += 1 })
  await subscribed(channel)
  assert.equal(await channel.track({ status: 'online' }), 'ok')
  await until('presence state', () => Object.keys(channel.presenceState()).length > 0)
  const state = channel.presenceState()
  const [key] = Object.keys(state)
  assert.ok(key.endsWith('ann') || key.includes('-'), key)
  assert.equal(state[key][0].status, 'online')
  assert.ok(synced > 0)
  await client.removeChannel(channel)
})

await check('a channel the policies refuse reports an error, and nothing crashes', async () => {
  const channel = client.channel('forbidden-zone')
  const outcome = await new Promise((resolve) => channel.subscribe((status, error) => {
    if (status !== 'SUBSCRIBED' && status !== 'CLOSED') resolve([status, error?.message])
  }))
  assert.equal(outcome[0], 'CHANNEL_ERROR')
  await client.removeChannel(channel)
})

// The user's token re-signed to expire in 3 s: the connection pauses when
// it expires, and a fresh token (supabase-js's `access_token` event, from
// realtime.setAuth) resumes it and replays what was missed.
const shortLived = (token, seconds) => {
  const [header, payload] = token.split('.')
  const claims = JSON.parse(Buffer.from(payload, 'base64url'))
  claims.exp = Math.floor(Date.now() / 1000) + seconds
  const body = `${header}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}`
  const signature = createHmac('sha256', process.env.JWT_SECRET).update(body).digest('base64url')
  return `${body}.${signature}`
}

await check('an expired token pauses delivery; a fresh one resumes it with the missed changes', async () => {
  ok('createUser', await service.auth.admin.createUser({ email: 'rt@example.com', password: 'correct horse battery', email_confirm: true }))
  const user = createClient(url, process.env.ANON_KEY, options)
  const { session } = ok('signIn', await user.auth.signInWithPassword({ email: 'rt@example.com', password: 'correct horse battery' }))
  await user.realtime.setAuth(shortLived(session.access_token, 3))
  const got = []
  const channel = user.channel('mine')
    .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'messages' }, (payload) => got.push(payload.new.body))
  await subscribed(channel)
  ok('insert', await service.from('messages').insert({ room: 'a', body: 'before' }))
  await until('the first change', () => got.length === 1)
  await new Promise((resolve) => setTimeout(resolve, 3500))
  ok('insert', await service.from('messages').insert({ room: 'a', body: 'during' }))
  await new Promise((resolve) => setTimeout(resolve, 500))
  assert.deepEqual(got, ['before'], 'paused while the token is expired')
  await user.realtime.setAuth(session.access_token)
  await until('the missed change', () => got.length === 2)
  ok('insert', await service.from('messages').insert({ room: 'a', body: 'after' }))
  await until('the next change', () => got.length === 3)
  assert.deepEqual(got, ['before', 'during', 'after'])
  await user.removeAllChannels()
})

await client.removeAllChannels()
finish('supabase-js realtime')
