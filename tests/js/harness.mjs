// A small harness for the compatibility scripts: every check runs, each
// failure is listed with its name, and the process exits non-zero if any
// failed (the Rust suite shows the output).
import assert from 'node:assert/strict'

const failures = []
let passed = 0

export async function check(name, body) {
  try {
    await body()
    passed += 1
  } catch (error) {
    failures.push(`${name}: ${error?.stack ?? error}`)
  }
}

/** `data` of a supabase-js answer, asserting it carries no error. */
export function ok(label, result) {
  assert.equal(result.error, null, `${label}: ${JSON.stringify(result.error)}`)
  return result.data
}

export function finish(suite) {
  if (failures.length > 0) {
    console.error(`${suite}: ${failures.length} of ${failures.length + passed} checks failed\n` + failures.join('\n\n'))
    process.exit(1)
  }
  console.log(`${suite}: all ${passed} checks passed`)
}

export { assert }
