// supabase-js's storage client (@supabase/storage-js) against a running
// Basalt: every call the storage tests need a client to make, with its
// answer checked. Run by tests/tests/storage.rs with BASALT_URL and
// SERVICE_KEY; exits non-zero on the first mismatch.
import { StorageClient } from '@supabase/storage-js'
import assert from 'node:assert/strict'

const key = process.env.SERVICE_KEY
const base = process.env.BASALT_URL + '/storage/v1'
const s = new StorageClient(base, { apikey: key, Authorization: 'Bearer ' + key })
const ok = (label, result) => {
  assert.equal(result.error, null, `${label}: ${result.error?.message}`)
  return result.data
}

ok('createBucket', await s.createBucket('docs', { public: true, fileSizeLimit: 1024 * 1024, allowedMimeTypes: ['text/*'] }))
assert.deepEqual(ok('listBuckets', await s.listBuckets()).map((b) => b.id), ['docs'])
assert.equal(ok('getBucket', await s.getBucket('docs')).public, true)
ok('updateBucket', await s.updateBucket('docs', { public: true, fileSizeLimit: 2 * 1024 * 1024 }))
const b = s.from('docs')
const uploaded = ok('upload', await b.upload('a/hello.txt', new Blob(['hello world'], { type: 'text/plain' }), { cacheControl: '120' }))
assert.equal(uploaded.fullPath, 'docs/a/hello.txt')
const taken = await b.upload('a/hello.txt', new Blob(['x'], { type: 'text/plain' }))
assert.equal(taken.error?.status, 409)
const refused = await b.upload('a/page.html', new Blob(['<p>'], { type: 'application/json' }))
assert.equal(refused.error?.status, 415)
ok('upsert', await b.upload('a/hello.txt', new Blob(['hello again'], { type: 'text/plain' }), { upsert: true }))
ok('update', await b.update('a/hello.txt', new Blob(['updated'], { type: 'text/plain' })))
assert.equal(await ok('download', await b.download('a/hello.txt')).text(), 'updated')
const listed = ok('list', await b.list('a', { limit: 10, sortBy: { column: 'name', order: 'asc' } }))
assert.deepEqual(listed.map((o) => [o.name, o.metadata.size]), [['hello.txt', 7]])
assert.deepEqual(ok('list root', await b.list()).map((o) => o.name), ['a'])
const signed = ok('createSignedUrl', await b.createSignedUrl('a/hello.txt', 60))
assert.equal(await (await fetch(signed.signedUrl)).text(), 'updated')
const many = ok('createSignedUrls', await b.createSignedUrls(['a/hello.txt', 'nope.txt'], 60))
assert.ok(many[0].signedUrl && many[1].error, JSON.stringify(many))
const upload = ok('createSignedUploadUrl', await b.createSignedUploadUrl('a/signed.txt'))
ok('uploadToSignedUrl', await b.uploadToSignedUrl('a/signed.txt', upload.token, new Blob(['via token'], { type: 'text/plain' })))
const publicUrl = b.getPublicUrl('a/signed.txt').data.publicUrl
assert.equal(await (await fetch(publicUrl)).text(), 'via token')
ok('move', await b.move('a/signed.txt', 'b/moved.txt'))
ok('copy', await b.copy('b/moved.txt', 'b/copied.txt'))
assert.equal(ok('info', await b.info('b/copied.txt')).size, 9)
assert.equal(ok('exists', await b.exists('b/copied.txt')), true)
assert.deepEqual(ok('remove', await b.remove(['b/moved.txt', 'b/copied.txt'])).map((o) => o.name).sort(), ['b/copied.txt', 'b/moved.txt'])
ok('emptyBucket', await s.emptyBucket('docs'))
ok('deleteBucket', await s.deleteBucket('docs'))
console.log('storage-js: all calls answered as expected')
