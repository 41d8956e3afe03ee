// supabase-js's auth client (@supabase/supabase-js → auth-js) against a
// running Basalt: email/password apps' calls, the user object's GoTrue
// fields, and the admin API as supabase-js calls it. BASALT_URL,
// SERVICE_KEY and ANON_KEY come from the Rust suite.
import { createClient } from '@supabase/supabase-js'
import ws from 'ws'
import { assert, check, finish, ok } from './harness.mjs'
import { createHmac } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'

const url = process.env.BASALT_URL
const options = { auth: { persistSession: false, autoRefreshToken: false }, realtime: { transport: ws } }
const admin = createClient(url, process.env.SERVICE_KEY, options).auth.admin
const client = createClient(url, process.env.ANON_KEY, options)

await check('admin.createUser, then sign in with the password', async () => {
  const { user } = ok('createUser', await admin.createUser({ email: 'ada@example.com', password: 'correct horse battery', email_confirm: true, user_metadata: { name: 'Ada' } }))
  assert.equal(user.email, 'ada@example.com')
  const session = ok('signIn', await client.auth.signInWithPassword({ email: 'ada@example.com', password: 'correct horse battery' }))
  assert.equal(session.user.id, user.id)
  assert.ok(session.session.access_token)
})

await check('the user object carries GoTrue fields', async () => {
  const { user } = ok('getUser', await client.auth.getUser())
  assert.equal(user.phone, '')
  assert.equal(user.is_anonymous, false)
  assert.equal(user.aud, 'authenticated')
  assert.equal(user.user_metadata.name, 'Ada')
  assert.deepEqual(user.app_metadata.providers, ['email'])
  assert.equal(user.identities.length, 1)
  const [identity] = user.identities
  assert.equal(identity.provider, 'email')
  assert.equal(identity.user_id, user.id)
  assert.equal(identity.identity_data.email, 'ada@example.com')
  assert.equal(identity.identity_data.email_verified, true)
  assert.ok(user.confirmed_at && user.email_confirmed_at && user.last_sign_in_at)
})

await check('admin.listUsers() with no arguments, and paged', async () => {
  ok('createUser', await admin.createUser({ email: 'bob@example.com', password: 'correct horse battery', email_confirm: true }))
  const all = ok('listUsers', await admin.listUsers())
  assert.deepEqual(all.users.map((u) => u.email).sort(), ['ada@example.com', 'bob@example.com'])
  const page = ok('listUsers paged', await admin.listUsers({ page: 1, perPage: 1 }))
  assert.equal(page.users.length, 1)
})

await check('updateUser changes the metadata; signOut ends the session', async () => {
  const { user } = ok('updateUser', await client.auth.updateUser({ data: { plan: 'pro' } }))
  assert.equal(user.user_metadata.plan, 'pro')
  ok('signOut', await client.auth.signOut())
  const after = await client.auth.getUser()
  assert.notEqual(after.error, null)
})

await check('a wrong password is the GoTrue error', async () => {
  const result = await client.auth.signInWithPassword({ email: 'ada@example.com', password: 'wrong password here' })
  assert.equal(result.error?.status, 400)
  assert.equal(result.error?.code, 'invalid_credentials')
  assert.equal(result.error?.message, 'Invalid login credentials', "GoTrue's English")
})

await check('resend a pending sign-up confirmation', async () => {
  const signedUp = await client.auth.signUp({ email: 'pending@example.com', password: 'correct horse battery' })
  assert.equal(signedUp.error, null, JSON.stringify(signedUp.error))
  assert.equal(signedUp.data.session, null, 'confirmation is required')
  assert.equal(signedUp.data.user.confirmation_sent_at, null)
  ok('resend', await client.auth.resend({ type: 'signup', email: 'pending@example.com' }))
  const phone = await client.auth.resend({ type: 'sms', phone: '+15550100' })
  assert.equal(phone.error?.status, 400)
})

await check('admin.inviteUserByEmail creates the user and sends the invitation', async () => {
  const { user } = ok('invite', await admin.inviteUserByEmail('invitee@example.com', { data: { team: 'blue' } }))
  assert.equal(user.email, 'invitee@example.com')
  assert.equal(user.email_confirmed_at, null)
  assert.equal(user.user_metadata.team, 'blue')
  const again = await admin.inviteUserByEmail('ada@example.com')
  assert.equal(again.error?.status, 422, 'a confirmed account is not invited')
})

await check('admin.generateLink: a magic link and a sign-up link verify into sessions', async () => {
  const magic = ok('magiclink', await admin.generateLink({ type: 'magiclink', email: 'ada@example.com' }))
  assert.equal(magic.user.email, 'ada@example.com')
  assert.equal(magic.properties.verification_type, 'magiclink')
  assert.match(magic.properties.action_link, /\/auth\/v1\/verify\?token=/)
  const viaMagic = ok('verify magiclink', await client.auth.verifyOtp({ token_hash: magic.properties.hashed_token, type: 'magiclink' }))
  assert.equal(viaMagic.user.email, 'ada@example.com')
  const signup = ok('signup link', await admin.generateLink({ type: 'signup', email: 'linked@example.com', password: 'correct horse battery' }))
  assert.equal(signup.user.email_confirmed_at, null)
  const confirmed = ok('verify signup', await client.auth.verifyOtp({ token_hash: signup.properties.hashed_token, type: 'signup' }))
  assert.ok(confirmed.user.email_confirmed_at)
  assert.ok(confirmed.session.access_token)
  const missing = await admin.generateLink({ type: 'recovery', email: 'nobody@example.com' })
  assert.equal(missing.error?.status, 404)
})

await check('signInAnonymously, then adding an email', async () => {
  const anonymous = createClient(url, process.env.ANON_KEY, options)
  const { user, session } = ok('signInAnonymously', await anonymous.auth.signInAnonymously({ options: { data: { theme: 'dark' } } }))
  assert.equal(user.is_anonymous, true)
  assert.equal(user.email, '')
  assert.deepEqual(user.identities, [])
  assert.equal(user.user_metadata.theme, 'dark')
  const claims = JSON.parse(Buffer.from(session.access_token.split('.')[1], 'base64url'))
  assert.equal(claims.is_anonymous, true)
  assert.equal(claims.role, 'authenticated')
  const { user: pending } = ok('updateUser', await anonymous.auth.updateUser({ email: 'anon-upgraded@example.com' }))
  assert.equal(pending.new_email, 'anon-upgraded@example.com')
  assert.equal(pending.is_anonymous, true, 'until the new address is confirmed')
})

/** The match of `pattern` in the first email to `to` received after `since`
 * (ms), read from the SMTP server's maildir (MAILDIR, from the Rust suite). */
const mailTo = async (to, since, pattern) => {
  const dir = join(process.env.MAILDIR, 'new')
  for (let tries = 0; tries < 300; tries += 1) {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name)
      if (statSync(path).mtimeMs < since) continue
      // Undo quoted-printable: soft line breaks, then =XX.
      const text = readFileSync(path, 'latin1')
        .replace(/=\r?\n/g, '')
        .replace(/=([0-9A-F]{2})/g, (_, hex) => String.fromCharCode(parseInt(hex, 16)))
      if (!text.includes(`To: ${to}`)) continue
      const found = text.match(pattern)
      if (found) return found
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`no email to ${to} matching ${pattern}`)
}

/** The verify link of the first email to `to` received after `since`. */
const linkTo = async (to, since) =>
  (await mailTo(to, since, /https?:\/\/[^\s"<>]*\/auth\/v1\/verify\?[^\s"<>]+/))[0].replaceAll('&amp;', '&')

/** The reauthentication code of the first email to `to` after `since`. */
const codeTo = async (to, since) => (await mailTo(to, since, /Enter the code: (\d{6})/))[1]

/** The sign-in code of the first email to `to` after `since`. */
const signInCodeTo = async (to, since) => (await mailTo(to, since, /Or enter the code: (\d{6})/))[1]

await check('signInWithOtp, then verifyOtp with the emailed six-digit code; five wrong codes void the code, not the link', async () => {
  const me = createClient(url, process.env.ANON_KEY, options)
  let since = Date.now()
  ok('signInWithOtp', await me.auth.signInWithOtp({ email: 'ada@example.com', options: { shouldCreateUser: false } }))
  let code = await signInCodeTo('ada@example.com', since)
  const { session } = ok('verifyOtp', await me.auth.verifyOtp({ email: 'ada@example.com', token: code, type: 'email' }))
  assert.ok(session.access_token)
  const again = await me.auth.verifyOtp({ email: 'ada@example.com', token: code, type: 'email' })
  assert.equal(again.error?.code, 'otp_expired', 'a code works once')
  since = Date.now()
  ok('signInWithOtp again', await me.auth.signInWithOtp({ email: 'ada@example.com', options: { shouldCreateUser: false } }))
  code = await signInCodeTo('ada@example.com', since)
  for (let i = 0; i < 5; i += 1) {
    const wrong = String((Number(code) + 1 + i) % 1000000).padStart(6, '0')
    const refused = await me.auth.verifyOtp({ email: 'ada@example.com', token: wrong, type: 'magiclink' })
    assert.equal(refused.error?.code, 'otp_expired')
  }
  const voided = await me.auth.verifyOtp({ email: 'ada@example.com', token: code, type: 'magiclink' })
  assert.equal(voided.error?.code, 'otp_expired', 'five wrong codes void the code')
  const link = await linkTo('ada@example.com', since)
  const followed = await fetch(link, { redirect: 'manual' })
  assert.match(followed.headers.get('location'), /access_token=/, 'the link still works')
  const generated = ok('generateLink', await admin.generateLink({ type: 'magiclink', email: 'ada@example.com' }))
  assert.match(generated.properties.email_otp, /^\d{6}$/)
  ok('verify generated code', await me.auth.verifyOtp({ email: 'ada@example.com', token: generated.properties.email_otp, type: 'magiclink' }))
})

await check('reauthenticate(): a password change asks for the emailed code, which one guess spends', async () => {
  const me = createClient(url, process.env.ANON_KEY, options)
  ok('createUser', await admin.createUser({ email: 'careful@example.com', password: 'correct horse battery', email_confirm: true }))
  ok('signIn', await me.auth.signInWithPassword({ email: 'careful@example.com', password: 'correct horse battery' }))
  const needed = await me.auth.updateUser({ password: 'a brand new passphrase' })
  assert.equal(needed.error?.status, 400, JSON.stringify(needed.error))
  assert.equal(needed.error?.code, 'reauthentication_needed')
  const moved = await me.auth.updateUser({ email: 'elsewhere@example.com' })
  assert.equal(moved.error?.code, 'reauthentication_needed', 'an address change too')
  let since = Date.now()
  ok('reauthenticate', await me.auth.reauthenticate())
  let code = await codeTo('careful@example.com', since)
  const guessed = await me.auth.updateUser({ password: 'a brand new passphrase', nonce: code === '000000' ? '111111' : '000000' })
  assert.equal(guessed.error?.status, 422, JSON.stringify(guessed.error))
  assert.equal(guessed.error?.code, 'reauthentication_not_valid')
  const spent = await me.auth.updateUser({ password: 'a brand new passphrase', nonce: code })
  assert.equal(spent.error?.code, 'reauthentication_not_valid', 'the wrong guess spent the code')
  since = Date.now()
  ok('reauthenticate again', await me.auth.reauthenticate())
  code = await codeTo('careful@example.com', since)
  ok('updateUser with the code', await me.auth.updateUser({ password: 'a brand new passphrase', nonce: code }))
  const fresh = createClient(url, process.env.ANON_KEY, options)
  ok('signIn with the new password', await fresh.auth.signInWithPassword({ email: 'careful@example.com', password: 'a brand new passphrase' }))
})

await check('identities: the email identity is listed and cannot be unlinked', async () => {
  const me = createClient(url, process.env.ANON_KEY, options)
  ok('signIn', await me.auth.signInWithPassword({ email: 'ada@example.com', password: 'correct horse battery' }))
  const { identities } = ok('getUserIdentities', await me.auth.getUserIdentities())
  assert.deepEqual(identities.map((i) => i.provider), ['email'])
  const unlinked = await me.auth.unlinkIdentity(identities[0])
  assert.equal(unlinked.error?.status, 422, JSON.stringify(unlinked.error))
  assert.equal(unlinked.error?.code, 'single_identity_not_deletable')
  const other = await me.auth.unlinkIdentity({ ...identities[0], identity_id: '00000000-0000-0000-0000-000000000000' })
  assert.equal(other.error?.code, 'identity_not_found')
})

await check('admin.generateLink: an email change link moves the account to the new address', async () => {
  ok('createUser', await admin.createUser({ email: 'mover@example.com', password: 'correct horse battery', email_confirm: true }))
  const link = ok('email_change_new', await admin.generateLink({ type: 'email_change_new', email: 'mover@example.com', newEmail: 'moved@example.com' }))
  assert.equal(link.user.new_email, 'moved@example.com')
  assert.equal(link.properties.verification_type, 'email_change_new')
  const verified = ok('verify', await client.auth.verifyOtp({ token_hash: link.properties.hashed_token, type: 'email_change' }))
  assert.equal(verified.user.email, 'moved@example.com')
  const taken = await admin.generateLink({ type: 'email_change_current', email: 'moved@example.com', newEmail: 'ada@example.com' })
  assert.equal(taken.error?.status, 422, JSON.stringify(taken.error))
})

await check('the PKCE flow: a magic link gives the app a code, exchanged once for a session', async () => {
  const stored = new Map()
  const storage = { getItem: (k) => stored.get(k) ?? null, setItem: (k, v) => { stored.set(k, v) }, removeItem: (k) => { stored.delete(k) } }
  const pkce = createClient(url, process.env.ANON_KEY, { auth: { flowType: 'pkce', persistSession: true, autoRefreshToken: false, storage }, realtime: { transport: ws } })
  const since = Date.now()
  ok('signInWithOtp', await pkce.auth.signInWithOtp({ email: 'ada@example.com', options: { emailRedirectTo: 'https://app.example.com/callback', shouldCreateUser: false } }))
  const link = await linkTo('ada@example.com', since)
  const followed = await fetch(link, { redirect: 'manual' })
  assert.equal(followed.status, 303)
  const location = new URL(followed.headers.get('location'))
  assert.equal(`${location.origin}${location.pathname}`, 'https://app.example.com/callback')
  assert.ok(!location.href.includes('access_token'), 'no tokens in the URL')
  const code = location.searchParams.get('code')
  const { user, session } = ok('exchangeCodeForSession', await pkce.auth.exchangeCodeForSession(code))
  assert.equal(user.email, 'ada@example.com')
  assert.ok(session.access_token && session.refresh_token)
  // A code works once (supabase-js forgets its verifier after the exchange,
  // so the server is asked directly).
  const exchange = (authCode, verifier) => fetch(`${url}/auth/v1/token?grant_type=pkce`, {
    method: 'POST',
    headers: { apikey: process.env.ANON_KEY, 'content-type': 'application/json' },
    body: JSON.stringify({ auth_code: authCode, code_verifier: verifier }),
  })
  const again = await exchange(code, 'x'.repeat(43))
  assert.equal(again.status, 404)
  assert.equal((await again.json()).code, 'flow_state_not_found')
})

/** RFC 6238's code (SHA-1, six digits, 30 s) of a base32 secret, written
 * here from the RFC to check the server's. */
const totpCode = (secret, step = Math.floor(Date.now() / 30000)) => {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567'
  const bits = [...secret.replace(/=+$/, '')].map((c) => alphabet.indexOf(c).toString(2).padStart(5, '0')).join('')
  const key = Buffer.from(bits.match(/.{8}/g).map((byte) => parseInt(byte, 2)))
  const counter = Buffer.alloc(8)
  counter.writeBigUInt64BE(BigInt(step))
  const mac = createHmac('sha1', key).update(counter).digest()
  const offset = mac[mac.length - 1] & 0xf
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, '0')
}

await check('MFA with TOTP: enroll, verify to aal2, codes work once, aal2 policies, admin factors', async () => {
  const { user } = ok('createUser', await admin.createUser({ email: 'mfa@example.com', password: 'correct horse battery', email_confirm: true }))
  const signIn = async () => {
    const session = createClient(url, process.env.ANON_KEY, options)
    ok('signIn', await session.auth.signInWithPassword({ email: 'mfa@example.com', password: 'correct horse battery' }))
    return session
  }
  const me = await signIn()
  const before = ok('aal', await me.auth.mfa.getAuthenticatorAssuranceLevel())
  assert.deepEqual([before.currentLevel, before.nextLevel], ['aal1', 'aal1'])
  const enrolled = ok('enroll', await me.auth.mfa.enroll({ factorType: 'totp', friendlyName: 'phone' }))
  assert.match(enrolled.totp.uri, /^otpauth:\/\/totp\/.+secret=/)
  assert.match(enrolled.totp.qr_code, /^data:image\/svg\+xml;utf-8,.*<svg/s)
  const taken = await me.auth.mfa.enroll({ factorType: 'totp', friendlyName: 'phone' })
  assert.equal(taken.error?.code, 'mfa_factor_name_conflict')
  const spare = ok('enroll spare', await me.auth.mfa.enroll({ factorType: 'totp', friendlyName: 'spare' }))
  const code = totpCode(enrolled.totp.secret)
  const wrong = await me.auth.mfa.challengeAndVerify({ factorId: enrolled.id, code: code === '000000' ? '111111' : '000000' })
  assert.equal(wrong.error?.status, 422, JSON.stringify(wrong.error))
  assert.equal(wrong.error?.code, 'mfa_verification_failed')
  const verified = ok('challengeAndVerify', await me.auth.mfa.challengeAndVerify({ factorId: enrolled.id, code }))
  const claims = JSON.parse(Buffer.from(verified.access_token.split('.')[1], 'base64url'))
  assert.equal(claims.aal, 'aal2')
  assert.deepEqual(claims.amr.map((m) => m.method), ['password', 'totp'])
  assert.equal(ok('aal after', await me.auth.mfa.getAuthenticatorAssuranceLevel()).currentLevel, 'aal2')
  const listed = ok('listFactors', await me.auth.mfa.listFactors())
  assert.deepEqual(listed.totp.map((f) => f.id), [enrolled.id])
  assert.deepEqual(listed.all.map((f) => f.id), [enrolled.id], 'the unverified spare is dropped')
  assert.ok(!listed.all.some((f) => f.id === spare.id))
  const replay = await me.auth.mfa.challengeAndVerify({ factorId: enrolled.id, code })
  assert.equal(replay.error?.code, 'mfa_verification_failed', 'a code works once')
  // Another sign-in is aal1 until it verifies too, and may not remove the factor.
  const other = await signIn()
  const level = ok('aal other', await other.auth.mfa.getAuthenticatorAssuranceLevel())
  assert.deepEqual([level.currentLevel, level.nextLevel], ['aal1', 'aal2'])
  const refused = await other.auth.mfa.unenroll({ factorId: enrolled.id })
  assert.equal(refused.error?.status, 403, JSON.stringify(refused.error))
  assert.equal(refused.error?.code, 'insufficient_aal')
  // A policy for the subject aal2: only the verified session reads the vault.
  const denied = await other.from('vault').select('note')
  assert.equal(denied.status, 403, JSON.stringify(denied))
  assert.deepEqual(ok('vault', await me.from('vault').select('note')), [{ note: 'shh' }])
  // Refreshing keeps the level.
  const refreshed = ok('refresh', await me.auth.refreshSession())
  assert.equal(JSON.parse(Buffer.from(refreshed.session.access_token.split('.')[1], 'base64url')).aal, 'aal2')
  // Five wrong codes (the wrong one and the replay above, three more) lock
  // the factor for a while, even for the right code.
  for (let i = 0; i < 3; i += 1) {
    const guess = await other.auth.mfa.challengeAndVerify({ factorId: enrolled.id, code: String(i).repeat(6) === totpCode(enrolled.totp.secret) ? '999999' : String(i).repeat(6) })
    assert.equal(guess.error?.code, 'mfa_verification_failed')
  }
  const locked = await other.auth.mfa.challengeAndVerify({ factorId: enrolled.id, code: totpCode(enrolled.totp.secret) })
  assert.equal(locked.error?.status, 429, JSON.stringify(locked.error))
  // Admins list and remove a user's factors; the sessions are aal1 again.
  assert.equal(ok('admin list', await admin.mfa.listFactors({ userId: user.id })).factors.length, 1)
  ok('admin delete', await admin.mfa.deleteFactor({ userId: user.id, id: enrolled.id }))
  assert.deepEqual(ok('admin list after', await admin.mfa.listFactors({ userId: user.id })).factors, [])
  const downgraded = ok('refresh after delete', await me.auth.refreshSession())
  assert.equal(JSON.parse(Buffer.from(downgraded.session.access_token.split('.')[1], 'base64url')).aal, 'aal1')
})

finish('supabase-js auth')
