#!/usr/bin/env node
// Client-compatibility test: drives the vision-pipeline server with the real @trpc/client 11
// (httpBatchLink and httpLink) and superjson 1.13.3, superjson 2.x, or no transformer, the way
// the TypeScript frontend does, and asserts the exact results of every procedure and error.
//
// usage: node compat.mjs <baseUrl> <tokenA> <tokenB> <imageUrl>
//   baseUrl   e.g. http://127.0.0.1:3000/api/trpc
//   tokenA/B  session JWTs of two different users (sent as the app_session_id cookie, and
//             as Authorization: Bearer in one client per combination)
//   imageUrl  http URL of a small red PNG that the server can fetch
//
// Output: one line per check, `ok - <name>` or `not ok - <name>: <detail>`, then
// `N passed, M failed`. Exit code 0 only when M == 0.

import { readFileSync } from 'node:fs';
import { inspect, isDeepStrictEqual } from 'node:util';
import { createTRPCClient, httpBatchLink, httpLink, TRPCClientError } from '@trpc/client';
import * as superjson1 from 'superjson'; // 1.13.3, what the frontend ships
import * as superjson2 from 'superjson2'; // npm:superjson@2.2.x

const [baseUrl, tokenA, tokenB, imageUrl] = process.argv.slice(2);
if (!baseUrl || !tokenA || !tokenB || !imageUrl) {
  console.error('usage: node compat.mjs <baseUrl> <tokenA> <tokenB> <imageUrl>');
  process.exit(2);
}

const FETCH_TIMEOUT_MS = 15_000;
const CHECK_TIMEOUT_MS = 30_000;
const POLL_EVERY_MS = 100;
const POLL_FOR_MS = 30_000;
const MISSING_JOB = 999999999;
const UNAUTHED = 'Please login (10001)';

// ---------------------------------------------------------------- harness

let passed = 0;
let failed = 0;

class Fail extends Error {}

const show = (v) => {
  const s = inspect(v, { depth: 6, breakLength: Infinity, compact: true, maxStringLength: 300 });
  return s.length > 600 ? `${s.slice(0, 600)}…` : s;
};
const oneLine = (s) => String(s).replace(/\s*\n\s*/g, ' ');

function assert(cond, detail) {
  if (!cond) throw new Fail(detail);
}
function eq(actual, expected, what) {
  assert(isDeepStrictEqual(actual, expected), `${what}: expected ${show(expected)}, got ${show(actual)}`);
}
// getJobStatus may carry extra fields (SEED_API: extra fields do not break the frontend);
// every field of the contract must be there.
function keysInclude(obj, keys, what) {
  assert(obj !== null && typeof obj === 'object' && !Array.isArray(obj), `${what}: expected an object, got ${show(obj)}`);
  const missing = keys.filter((k) => !(k in obj));
  assert(missing.length === 0, `${what}: missing keys ${show(missing)}`);
}
function keysExactly(obj, keys, what) {
  assert(obj !== null && typeof obj === 'object' && !Array.isArray(obj), `${what}: expected an object, got ${show(obj)}`);
  eq(Object.keys(obj).sort(), [...keys].sort(), `${what} keys`);
}

async function check(name, fn, timeoutMs = CHECK_TIMEOUT_MS) {
  let timer;
  try {
    await Promise.race([
      fn(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Fail(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    const detail = err instanceof Fail ? err.message : `unexpected ${describeError(err)}`;
    console.log(`not ok - ${name}: ${oneLine(detail)}`);
  } finally {
    clearTimeout(timer);
  }
}

/** error.data without the dev-mode stack trace, for failure details */
const dataOf = (err) => (err?.data ? { ...err.data, stack: undefined } : err?.data);

function describeError(err) {
  if (err instanceof TRPCClientError) {
    return `TRPCClientError ${show(err.message)} data=${show(dataOf(err))}`;
  }
  return err?.stack?.split('\n').slice(0, 2).join(' ') ?? show(err);
}

// ------------------------------------------------------------ assertions

const JSONRPC_CODE = {
  BAD_REQUEST: -32600, UNAUTHORIZED: -32001, FORBIDDEN: -32003, NOT_FOUND: -32004,
  METHOD_NOT_SUPPORTED: -32005,
};
const HTTP_STATUS = {
  BAD_REQUEST: 400, UNAUTHORIZED: 401, FORBIDDEN: 403, NOT_FOUND: 404, METHOD_NOT_SUPPORTED: 405,
};

/** Checks that `err` is the TRPCClientError a genuine tRPC server would produce. */
function assertTrpcError(err, { code, message, path }) {
  assert(err instanceof TRPCClientError, `expected TRPCClientError ${code}, got ${describeError(err)}`);
  const got = `${show(err.message)} data=${show(dataOf(err))}`;
  assert(err.data?.code === code, `expected data.code ${code}, got ${got}`);
  assert(err.data.httpStatus === HTTP_STATUS[code], `expected data.httpStatus ${HTTP_STATUS[code]}, got ${got}`);
  assert(err.shape?.code === JSONRPC_CODE[code], `expected JSON-RPC code ${JSONRPC_CODE[code]}, got ${show(err.shape?.code)}`);
  if (message !== undefined) eq(err.message, message, 'error message');
  if (path !== undefined) eq(err.data.path, path, 'data.path');
}

/** Awaits a call that must fail; returns the error after checking it. */
async function expectError(promise, expected) {
  let result;
  try {
    result = await promise;
  } catch (err) {
    assertTrpcError(err, expected);
    return err;
  }
  throw new Fail(`expected ${expected.code}, but the call succeeded with ${show(result)}`);
}

/** BAD_REQUEST whose message is a JSON array of issues with `path` and `message`. */
async function expectValidationError(promise, { path, field }) {
  const err = await expectError(promise, { code: 'BAD_REQUEST', path });
  let issues;
  try {
    issues = JSON.parse(err.message);
  } catch {
    throw new Fail(`message is not JSON: ${show(err.message)}`);
  }
  assert(Array.isArray(issues) && issues.length > 0, `message should be a non-empty JSON array, got ${show(issues)}`);
  for (const issue of issues) {
    assert(issue && Array.isArray(issue.path) && typeof issue.message === 'string',
      `every issue needs path (array) and message (string), got ${show(issue)}`);
  }
  if (field !== undefined) {
    assert(issues.some((i) => i.path[0] === field), `no issue has path [${show(field)}]: ${show(issues)}`);
  }
}

const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

/** A Date under superjson, the JSON.stringify(Date) form otherwise; returns epoch ms. */
function assertDate(v, what, sj) {
  if (sj) {
    assert(v instanceof Date && !Number.isNaN(v.getTime()), `${what} should be a Date, got ${show(v)}`);
    return v.getTime();
  }
  assert(typeof v === 'string' && ISO_RE.test(v), `${what} should be an ISO string like 2024-01-02T03:04:05.678Z, got ${show(v)}`);
  return Date.parse(v);
}
function assertRecent(ms, what) {
  const skew = Math.abs(Date.now() - ms);
  assert(skew < 10 * 60_000, `${what} is ${Math.round(skew / 60_000)} min away from now (time zone bug?)`);
}

const STATUS_PROGRESS = { pending: 0, gemini_analyzing: 25, deepseek_generating: 60, complete: 100 };
const JOB_STATUS_KEYS = ['jobId', 'status', 'progress', 'geminOutput', 'deepseekOutput', 'errorMessage', 'createdAt', 'completedAt'];
const HISTORY_KEYS = ['jobId', 'status', 'progress', 'imageUrl', 'analysisPurpose', 'createdAt', 'completedAt'];
const USER_KEYS = ['id', 'openId', 'name', 'email', 'loginMethod', 'role', 'createdAt', 'updatedAt', 'lastSignedIn'];

function assertCreated(res, what = 'createJob') {
  keysExactly(res, ['jobId', 'status', 'message'], what);
  assert(Number.isInteger(res.jobId) && res.jobId > 0, `${what}: jobId should be a positive integer, got ${show(res.jobId)}`);
  eq(res.status, 'pending', `${what} status`);
  eq(res.message, 'Job created and queued for processing', `${what} message`);
}

function assertUser(u, sj) {
  keysExactly(u, USER_KEYS, 'auth.me');
  assert(Number.isInteger(u.id), `id should be an integer, got ${show(u.id)}`);
  assert(typeof u.openId === 'string' && u.openId.length > 0, `openId should be a non-empty string, got ${show(u.openId)}`);
  assert(['user', 'admin'].includes(u.role), `role should be user|admin, got ${show(u.role)}`);
  for (const k of ['name', 'email', 'loginMethod']) {
    assert(u[k] === null || typeof u[k] === 'string', `${k} should be string or null, got ${show(u[k])}`);
  }
  for (const k of ['createdAt', 'updatedAt']) assertDate(u[k], k, sj);
  assertRecent(assertDate(u.lastSignedIn, 'lastSignedIn', sj), 'lastSignedIn');
}

function hexToRgb(hex) {
  const m = /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.exec(hex);
  if (!m) return null;
  const h = m[1].length === 3 ? [...m[1]].map((c) => c + c).join('') : m[1];
  return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
}

/** Asserts the final snapshot of a job made from the red test image. */
function assertCompleteRedJob(s, sj) {
  eq(s.status, 'complete', 'status');
  eq(s.progress, 100, 'progress');
  eq(s.errorMessage, null, 'errorMessage');
  const primary = s.geminOutput?.colors?.primary;
  assert(Array.isArray(primary) && primary.length > 0, `geminOutput.colors.primary should be a non-empty array, got ${show(primary)}`);
  for (const c of primary) assert(hexToRgb(c), `primary colour ${show(c)} is not a #hex string`);
  const [r, g, b] = hexToRgb(primary[0]);
  assert(r >= 150 && g <= 100 && b <= 100, `first primary colour ${primary[0]} is not reddish`);
  const pieces = s.deepseekOutput;
  assert(Array.isArray(pieces) && pieces.length > 0, `deepseekOutput should be a non-empty array, got ${show(pieces)}`);
  for (const p of pieces) {
    assert(p && typeof p.title === 'string' && typeof p.body === 'string' && p.body.length > 0,
      `each content piece needs string title and non-empty body, got ${show(p)}`);
  }
  const created = assertDate(s.createdAt, 'createdAt', sj);
  const completed = assertDate(s.completedAt, 'completedAt', sj);
  assertRecent(created, 'createdAt');
  assert(completed >= created, `completedAt ${show(s.completedAt)} is before createdAt ${show(s.createdAt)}`);
}

/** Polls getJobStatus until complete, checking every snapshot on the way. */
async function pollUntilComplete(client, jobId, sj) {
  const deadline = Date.now() + POLL_FOR_MS;
  let s;
  for (;;) {
    s = await client.visionPipeline.getJobStatus.query({ jobId });
    keysInclude(s, JOB_STATUS_KEYS, `getJobStatus(${jobId})`);
    eq(s.jobId, jobId, 'jobId');
    assert(s.status !== 'error', `job ${jobId} failed: ${show(s.errorMessage)}`);
    assert(s.status in STATUS_PROGRESS, `unknown status ${show(s.status)}`);
    eq(s.progress, STATUS_PROGRESS[s.status], `progress for status ${s.status}`);
    assertDate(s.createdAt, 'createdAt', sj);
    if (s.status === 'complete') return s;
    assert(s.completedAt === null, `completedAt should be null while ${s.status}, got ${show(s.completedAt)}`);
    assert(Date.now() < deadline, `job ${jobId} still ${s.status} after ${POLL_FOR_MS} ms`);
    await new Promise((r) => setTimeout(r, POLL_EVERY_MS));
  }
}

function assertHistory(list, sj, what) {
  assert(Array.isArray(list), `${what} should be an array, got ${show(list)}`);
  for (const item of list) {
    keysExactly(item, HISTORY_KEYS, `${what} item`);
    assert(Number.isInteger(item.jobId), `jobId should be an integer, got ${show(item.jobId)}`);
    assert(item.status in STATUS_PROGRESS || item.status === 'error', `unknown status ${show(item.status)}`);
    assert(Number.isInteger(item.progress), `progress should be an integer, got ${show(item.progress)}`);
    assert(typeof item.imageUrl === 'string' && typeof item.analysisPurpose === 'string', `imageUrl/analysisPurpose should be strings: ${show(item)}`);
    assertDate(item.createdAt, 'createdAt', sj);
    if (item.completedAt !== null) assertDate(item.completedAt, 'completedAt', sj);
  }
}
const ids = (list) => list.map((j) => j.jobId);

/** The caller's whole history, paged with the maximum limit. */
async function fullHistory(client) {
  const all = [];
  for (let offset = 0; offset < 100_000; offset += 100) {
    const page = await client.visionPipeline.getJobHistory.query({ limit: 100, offset });
    all.push(...page);
    if (page.length < 100) return all;
  }
  throw new Fail('history did not end after 100000 rows');
}

function assertCookieCleared(log) {
  const cookies = log.flatMap((r) => r.setCookie).filter((c) => /^app_session_id=/.test(c));
  assert(cookies.length > 0, `no Set-Cookie for app_session_id in the response (got ${show(log.flatMap((r) => r.setCookie))})`);
  const cleared = cookies.some((c) => {
    const maxAge = /;\s*max-age=(-?\d+)/i.exec(c);
    const expires = /;\s*expires=([^;]+)/i.exec(c);
    return (maxAge && Number(maxAge[1]) <= 0) || (expires && Date.parse(expires[1]) < Date.now());
  });
  assert(cleared, `Set-Cookie does not clear the cookie: ${show(cookies)}`);
}

// --------------------------------------------------------------- clients

const TRANSFORMERS = {
  superjson1: { serialize: (v) => superjson1.serialize(v), deserialize: (v) => superjson1.deserialize(v) },
  superjson2: { serialize: (v) => superjson2.serialize(v), deserialize: (v) => superjson2.deserialize(v) },
  none: null,
};
const LINKS = { batch: httpBatchLink, http: httpLink };

/**
 * An untyped tRPC client. `auth` is 'cookie' (app_session_id, as the browser sends it) or
 * 'bearer'. `log` records every HTTP exchange (method, url, request body, status, Set-Cookie).
 */
function makeClient({ link, transformer, token, auth = 'cookie' }) {
  const log = [];
  const recordingFetch = async (url, init = {}) => {
    const timeout = AbortSignal.timeout(FETCH_TIMEOUT_MS);
    const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
    const res = await fetch(url, { ...init, signal });
    log.push({
      method: init.method ?? 'GET', url: String(url), body: init.body,
      status: res.status, setCookie: res.headers.getSetCookie(),
    });
    return res;
  };
  const headers = () => {
    if (!token) return {};
    return auth === 'bearer' ? { authorization: `Bearer ${token}` } : { cookie: `app_session_id=${token}` };
  };
  const client = createTRPCClient({
    links: [link({ url: baseUrl, fetch: recordingFetch, headers, ...(transformer ? { transformer } : {}) })],
  });
  wireLogs.set(client, log); // not a property: the client proxy turns every property into a path
  return client;
}
const wireLogs = new WeakMap();
/** The HTTP exchanges a client made since the last call (clears its log). */
const takeLog = (client) => wireLogs.get(client).splice(0);

/** Runs calls in the same tick (one batch) and returns their settled results. */
const settleAll = (calls) => Promise.allSettled(calls);

function expectSettledError(settled, expected, what) {
  assert(settled.status === 'rejected', `${what}: expected ${expected.code}, got success ${show(settled.value)}`);
  assertTrpcError(settled.reason, expected);
}
/** The calls since the last takeLog() went out as one batch request answered with `status`. */
function expectOneRequest(client, status) {
  const log = takeLog(client);
  eq(log.length, 1, 'number of HTTP requests for the batch');
  const [req] = log;
  assert(new URL(req.url).searchParams.get('batch') === '1', `request was not a batch: ${req.url}`);
  eq(req.status, status, 'HTTP status of the batch response');
  return req;
}

// ------------------------------------------------------------------ data

const jobInput = (over = {}) => ({
  imageUrl,
  analysisPurpose: 'Brand colour check for a compatibility test',
  outputFormat: 'social_media_post',
  creativityLevel: 1,
  ...over,
});
const withoutKey = (obj, key) => Object.fromEntries(Object.entries(obj).filter(([k]) => k !== key));

let imageBytes = null; // the red PNG, fetched once, for the data: URL check

// ------------------------------------------------------------------ setup

async function setup() {
  await check('setup: superjson 1.13.3 and 2.x are the ones loaded', () => {
    const version = (pkg) => JSON.parse(readFileSync(new URL(`./node_modules/${pkg}/package.json`, import.meta.url), 'utf8')).version;
    eq(version('superjson'), '1.13.3', 'superjson version');
    assert(/^2\./.test(version('superjson2')), `superjson2 version should be 2.x, got ${version('superjson2')}`);
    eq(superjson1.serialize(undefined), { json: null, meta: { values: ['undefined'] } }, 'superjson 1 wire form');
    eq(superjson2.serialize(undefined), { json: null, meta: { values: ['undefined'], v: 1 } }, 'superjson 2 wire form');
  });

  await check('setup: imageUrl serves a PNG', async () => {
    const res = await fetch(imageUrl, { signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    eq(res.status, 200, `GET ${imageUrl} status`);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert(bytes.subarray(0, 8).equals(Buffer.from([137, 80, 78, 71, 13, 10, 26, 10])), 'not a PNG');
    imageBytes = bytes;
  });
}

// ----------------------------------------------------------------- suite

async function suite(linkName, tfName) {
  const tag = `[${linkName}/${tfName}]`;
  const t = (name, fn, ms) => check(`${tag} ${name}`, fn, ms);
  const sj = tfName !== 'none';
  const opts = { link: LINKS[linkName], transformer: TRANSFORMERS[tfName] };
  const A = makeClient({ ...opts, token: tokenA });
  const B = makeClient({ ...opts, token: tokenB });
  const bearerA = makeClient({ ...opts, token: tokenA, auth: 'bearer' });
  const anon = makeClient({ ...opts, token: null });
  const badToken = makeClient({ ...opts, token: 'not-a-session-token' });
  const S = {}; // state shared between checks: jobs, users

  // --- system.health
  await t('system.health {timestamp} -> {ok:true}', async () => {
    eq(await anon.system.health.query({ timestamp: Date.now() }), { ok: true }, 'result');
  });
  await t('system.health {timestamp:-1} -> BAD_REQUEST', () =>
    expectValidationError(anon.system.health.query({ timestamp: -1 }), { path: 'system.health', field: 'timestamp' }));

  // --- auth.me
  await t('auth.me without session -> null', async () => {
    eq(await anon.auth.me.query(), null, 'result');
  });
  await t('auth.me with an invalid token -> null', async () => {
    eq(await badToken.auth.me.query(), null, 'result');
  });
  await t('auth.me (cookie) -> user row', async () => {
    S.meA = await A.auth.me.query();
    assertUser(S.meA, sj);
  });
  await t('auth.me (Authorization: Bearer) -> same user', async () => {
    const me = await bearerA.auth.me.query();
    assertUser(me, sj);
    eq(me.openId, S.meA?.openId, 'openId via Bearer vs cookie');
  });
  await t('auth.me for token B -> a different user', async () => {
    const me = await B.auth.me.query();
    assertUser(me, sj);
    assert(me.openId !== S.meA?.openId, `tokens A and B are the same user ${show(me.openId)}`);
  });

  // --- visionPipeline.createJob
  await t('createJob {imageUrl, analysisPurpose, outputFormat, creativityLevel:1}', async () => {
    S.job1 = await A.visionPipeline.createJob.mutate(jobInput());
    assertCreated(S.job1);
  });
  await t('createJob with imageContext, additionalInstructions, creativityLevel 0', async () => {
    S.job2 = await A.visionPipeline.createJob.mutate(jobInput({
      imageContext: 'A flat red square, the brand colour',
      additionalInstructions: 'Keep it short; mention the colour.',
      outputFormat: 'bullet_points',
      creativityLevel: 0,
    }));
    assertCreated(S.job2);
  });
  await t('createJob without creativityLevel (defaults to 1)', async () => {
    S.job3 = await A.visionPipeline.createJob.mutate(withoutKey(jobInput({ outputFormat: 'detailed_analysis' }), 'creativityLevel'));
    assertCreated(S.job3);
  });
  await t('createJob as user B', async () => {
    S.jobB = await B.visionPipeline.createJob.mutate(jobInput({ analysisPurpose: 'User B job' }));
    assertCreated(S.jobB);
    const all = [S.job1, S.job2, S.job3, S.jobB].map((j) => j?.jobId);
    eq(new Set(all).size, 4, `distinct job ids ${show(all)}`);
  });
  await t('createJob without session -> UNAUTHORIZED', () =>
    expectError(anon.visionPipeline.createJob.mutate(jobInput()),
      { code: 'UNAUTHORIZED', message: UNAUTHED, path: 'visionPipeline.createJob' }));
  await t('createJob with an invalid token -> UNAUTHORIZED', () =>
    expectError(badToken.visionPipeline.createJob.mutate(jobInput()),
      { code: 'UNAUTHORIZED', message: UNAUTHED, path: 'visionPipeline.createJob' }));
  await t('createJob without session and invalid input -> UNAUTHORIZED (auth before input)', () =>
    expectError(anon.visionPipeline.createJob.mutate(jobInput({ outputFormat: 'poem' })),
      { code: 'UNAUTHORIZED', message: UNAUTHED }));
  const invalidJobs = {
    'outputFormat "poem"': [jobInput({ outputFormat: 'poem' }), 'outputFormat'],
    'creativityLevel 5': [jobInput({ creativityLevel: 5 }), 'creativityLevel'],
    'imageUrl "not a url"': [jobInput({ imageUrl: 'not a url' }), 'imageUrl'],
    'imageUrl ftp://': [jobInput({ imageUrl: 'ftp://example.com/red.png' }), 'imageUrl'],
    'missing analysisPurpose': [withoutKey(jobInput(), 'analysisPurpose'), 'analysisPurpose'],
  };
  for (const [name, [input, field]] of Object.entries(invalidJobs)) {
    await t(`createJob ${name} -> BAD_REQUEST`, () =>
      expectValidationError(A.visionPipeline.createJob.mutate(input), { path: 'visionPipeline.createJob', field }));
  }

  // --- visionPipeline.getJobStatus
  await t('getJobStatus: polled jobs reach "complete" with consistent status/progress', async () => {
    const polls = [
      ['job1', A], ['job2', A], ['job3', A], ['jobB', B],
    ].map(async ([key, client]) => {
      assert(S[key], `${key} was not created`);
      S[`${key}Final`] = await pollUntilComplete(client, S[key].jobId, sj);
    });
    const settled = await Promise.allSettled(polls);
    const errors = settled.filter((s) => s.status === 'rejected').map((s) => s.reason?.message ?? String(s.reason));
    assert(errors.length === 0, errors.join('; '));
  }, POLL_FOR_MS + 10_000);
  for (const key of ['job1', 'job2', 'job3', 'jobB']) {
    await t(`getJobStatus ${key} complete: red palette, content pieces, ${sj ? 'Dates' : 'ISO strings'}`, () => {
      assert(S[`${key}Final`], `${key} did not complete`);
      assertCompleteRedJob(S[`${key}Final`], sj);
    });
  }
  await t('getJobStatus via Authorization: Bearer', async () => {
    const s = await bearerA.visionPipeline.getJobStatus.query({ jobId: S.job1?.jobId });
    keysInclude(s, JOB_STATUS_KEYS, 'getJobStatus');
    eq(s.jobId, S.job1?.jobId, 'jobId');
  });
  await t('getJobStatus of another user\'s job -> FORBIDDEN', async () => {
    await expectError(B.visionPipeline.getJobStatus.query({ jobId: S.job1?.jobId }),
      { code: 'FORBIDDEN', message: 'You do not have access to this job', path: 'visionPipeline.getJobStatus' });
    await expectError(A.visionPipeline.getJobStatus.query({ jobId: S.jobB?.jobId }),
      { code: 'FORBIDDEN', message: 'You do not have access to this job' });
  });
  await t(`getJobStatus ${MISSING_JOB} -> NOT_FOUND`, () =>
    expectError(A.visionPipeline.getJobStatus.query({ jobId: MISSING_JOB }),
      { code: 'NOT_FOUND', message: 'Job not found', path: 'visionPipeline.getJobStatus' }));
  await t('getJobStatus without session -> UNAUTHORIZED', async () => {
    await expectError(anon.visionPipeline.getJobStatus.query({ jobId: S.job1?.jobId }),
      { code: 'UNAUTHORIZED', message: UNAUTHED, path: 'visionPipeline.getJobStatus' });
    await expectError(badToken.visionPipeline.getJobStatus.query({ jobId: S.job1?.jobId }),
      { code: 'UNAUTHORIZED', message: UNAUTHED });
  });
  await t('getJobStatus jobId "abc" -> BAD_REQUEST', () =>
    expectValidationError(A.visionPipeline.getJobStatus.query({ jobId: 'abc' }), { path: 'visionPipeline.getJobStatus', field: 'jobId' }));
  await t('getJobStatus {} -> BAD_REQUEST', () =>
    expectValidationError(A.visionPipeline.getJobStatus.query({}), { path: 'visionPipeline.getJobStatus', field: 'jobId' }));

  // --- visionPipeline.getJobHistory
  await t('getJobHistory {limit:5, offset:0}', async () => {
    S.first5 = await A.visionPipeline.getJobHistory.query({ limit: 5, offset: 0 });
    assertHistory(S.first5, sj, 'history');
    assert(S.first5.length >= 1 && S.first5.length <= 5, `expected 1..5 items, got ${S.first5.length}`);
  });
  await t('getJobHistory {} uses the defaults (limit 20, offset 0)', async () => {
    S.defaults = await A.visionPipeline.getJobHistory.query({});
    assertHistory(S.defaults, sj, 'history');
    assert(S.defaults.length >= 1 && S.defaults.length <= 20, `expected 1..20 items, got ${S.defaults.length}`);
    eq(ids(S.first5 ?? []), ids(S.defaults.slice(0, 5)), 'first 5 job ids');
  });
  await t('getJobHistory() with no input uses the defaults', async () => {
    const list = await A.visionPipeline.getJobHistory.query();
    assertHistory(list, sj, 'history');
    eq(ids(list), ids(S.defaults ?? []), 'job ids vs getJobHistory({})');
  });
  await t('getJobHistory {limit:2, offset:1} pages', async () => {
    const list = await A.visionPipeline.getJobHistory.query({ limit: 2, offset: 1 });
    assertHistory(list, sj, 'history');
    eq(ids(list), ids((S.defaults ?? []).slice(1, 3)), 'job ids vs getJobHistory({}).slice(1, 3)');
  });
  await t('getJobHistory contains the created jobs, oldest first, none of user B\'s', async () => {
    const all = await fullHistory(A);
    assertHistory(all, sj, 'history');
    for (const key of ['job1', 'job2', 'job3']) {
      const item = all.find((j) => j.jobId === S[key]?.jobId);
      assert(item, `${key} (${S[key]?.jobId}) missing from history`);
      eq(item.imageUrl, imageUrl, `${key} imageUrl`);
      eq(item.analysisPurpose, jobInput().analysisPurpose, `${key} analysisPurpose`);
      eq([item.status, item.progress], ['complete', 100], `${key} status/progress`);
      assertDate(item.completedAt, `${key} completedAt`, sj);
    }
    assert(!all.some((j) => j.jobId === S.jobB?.jobId), 'user B\'s job is in user A\'s history');
    const times = all.map((j) => (sj ? j.createdAt.getTime() : Date.parse(j.createdAt)));
    assert(times.every((v, i) => i === 0 || times[i - 1] <= v), 'history is not ordered by createdAt, oldest first');
  });
  await t('getJobHistory of user B has B\'s job and none of A\'s', async () => {
    const all = await fullHistory(B);
    const got = ids(all);
    assert(got.includes(S.jobB?.jobId), `jobB missing from ${show(got)}`);
    for (const key of ['job1', 'job2', 'job3']) assert(!got.includes(S[key]?.jobId), `${key} is in user B's history`);
  });
  await t('getJobHistory without session -> UNAUTHORIZED', () =>
    expectError(anon.visionPipeline.getJobHistory.query({ limit: 5, offset: 0 }),
      { code: 'UNAUTHORIZED', message: UNAUTHED, path: 'visionPipeline.getJobHistory' }));
  for (const [name, input, field] of [['limit:0', { limit: 0 }, 'limit'], ['limit:101', { limit: 101 }, 'limit'], ['offset:-1', { offset: -1 }, 'offset']]) {
    await t(`getJobHistory {${name}} -> BAD_REQUEST`, () =>
      expectValidationError(A.visionPipeline.getJobHistory.query(input), { path: 'visionPipeline.getJobHistory', field }));
  }

  // --- routing errors
  await t('unknown procedure visionPipeline.nope (query) -> NOT_FOUND', () =>
    expectError(A.visionPipeline.nope.query(),
      { code: 'NOT_FOUND', message: 'No procedure found on path "visionPipeline.nope"', path: 'visionPipeline.nope' }));
  await t('unknown procedure visionPipeline.nope (mutation) -> NOT_FOUND', () =>
    expectError(A.visionPipeline.nope.mutate({ x: 1 }), { code: 'NOT_FOUND', path: 'visionPipeline.nope' }));
  await t('mutation called as query (createJob.query) -> 405 METHOD_NOT_SUPPORTED', () =>
    expectError(A.visionPipeline.createJob.query(jobInput()), {
      code: 'METHOD_NOT_SUPPORTED', path: 'visionPipeline.createJob',
      message: 'Unsupported GET-request to mutation procedure at path "visionPipeline.createJob"',
    }));
  await t('query called as mutation (getJobStatus.mutate) -> 405 METHOD_NOT_SUPPORTED', () =>
    expectError(A.visionPipeline.getJobStatus.mutate({ jobId: S.job1?.jobId }), {
      code: 'METHOD_NOT_SUPPORTED', path: 'visionPipeline.getJobStatus',
      message: 'Unsupported POST-request to query procedure at path "visionPipeline.getJobStatus"',
    }));

  // --- auth.logout (last: it clears the cookie in a browser; our tokens stay valid)
  await t('auth.logout without session -> {success:true}, clears the cookie', async () => {
    takeLog(anon);
    eq(await anon.auth.logout.mutate(), { success: true }, 'result');
    const log = takeLog(anon);
    assertCookieCleared(log);
    if (linkName === 'http' && !sj) {
      eq(log[0]?.body, undefined, 'request body of a no-input mutation (client sends none)');
    }
  });
  await t('auth.logout signed in -> {success:true}, clears the cookie', async () => {
    takeLog(A);
    eq(await A.auth.logout.mutate(), { success: true }, 'result');
    assertCookieCleared(takeLog(A));
  });

  if (linkName === 'batch') await batchChecks(t, { A, anon, sj, S });
}

// ------------------------------------------------------ batching (httpBatchLink only)

async function batchChecks(t, { A, anon, sj, S }) {
  const jobId = (key) => S[key]?.jobId;

  await t('batch: all succeed -> one request, 200', async () => {
    takeLog(A);
    const [health, me, status] = await Promise.all([
      A.system.health.query({ timestamp: 0 }),
      A.auth.me.query(),
      A.visionPipeline.getJobStatus.query({ jobId: jobId('job1') }),
    ]);
    eq(health, { ok: true }, 'system.health');
    eq(me?.openId, S.meA?.openId, 'auth.me openId');
    eq(status?.jobId, jobId('job1'), 'getJobStatus jobId');
    expectOneRequest(A, 200);
  });
  await t('batch: own job, foreign job, missing job, auth.me -> each settles on its own, 207', async () => {
    takeLog(A);
    const [own, foreign, missing, me] = await settleAll([
      A.visionPipeline.getJobStatus.query({ jobId: jobId('job1') }),
      A.visionPipeline.getJobStatus.query({ jobId: jobId('jobB') }),
      A.visionPipeline.getJobStatus.query({ jobId: MISSING_JOB }),
      A.auth.me.query(),
    ]);
    assert(own.status === 'fulfilled', `own job: ${describeError(own.reason)}`);
    eq([own.value.jobId, own.value.status], [jobId('job1'), 'complete'], 'own job');
    if (sj) assert(own.value.createdAt instanceof Date, 'own job createdAt is not a Date inside a batch');
    expectSettledError(foreign, { code: 'FORBIDDEN', message: 'You do not have access to this job', path: 'visionPipeline.getJobStatus' }, 'foreign job');
    expectSettledError(missing, { code: 'NOT_FOUND', message: 'Job not found', path: 'visionPipeline.getJobStatus' }, 'missing job');
    assert(me.status === 'fulfilled', `auth.me: ${describeError(me.reason)}`);
    eq(me.value?.openId, S.meA?.openId, 'auth.me openId');
    expectOneRequest(A, 207);
  });
  await t('batch: the same error three times (repeated path) -> one request, 404', async () => {
    takeLog(A);
    const results = await settleAll([MISSING_JOB, MISSING_JOB - 1, MISSING_JOB].map((id) =>
      A.visionPipeline.getJobStatus.query({ jobId: id })));
    results.forEach((r, i) => expectSettledError(r, { code: 'NOT_FOUND', message: 'Job not found' }, `call ${i}`));
    expectOneRequest(A, 404);
  });
  await t('batch: all UNAUTHORIZED without session -> one request, 401', async () => {
    takeLog(anon);
    const results = await settleAll([
      anon.visionPipeline.getJobStatus.query({ jobId: jobId('job1') }),
      anon.visionPipeline.getJobHistory.query(),
      anon.visionPipeline.getJobHistory.query({ limit: 1 }),
    ]);
    results.forEach((r, i) => expectSettledError(r, { code: 'UNAUTHORIZED', message: UNAUTHED }, `call ${i}`));
    expectOneRequest(anon, 401);
  });
  await t('batch: success, validation error, unknown path -> 207', async () => {
    takeLog(A);
    const [ok, invalid, unknown] = await settleAll([
      A.visionPipeline.getJobHistory.query({ limit: 1 }),
      A.visionPipeline.getJobHistory.query({ limit: 0 }),
      A.visionPipeline.nope.query(),
    ]);
    assert(ok.status === 'fulfilled' && Array.isArray(ok.value), `getJobHistory: ${describeError(ok.reason)}`);
    expectSettledError(invalid, { code: 'BAD_REQUEST', path: 'visionPipeline.getJobHistory' }, 'limit 0');
    expectSettledError(unknown, { code: 'NOT_FOUND', path: 'visionPipeline.nope' }, 'nope');
    expectOneRequest(A, 207);
  });
  await t('batch: two createJob mutations -> one POST, two distinct jobs', async () => {
    takeLog(A);
    const [j1, j2] = await Promise.all([
      A.visionPipeline.createJob.mutate(jobInput({ analysisPurpose: 'batched 1' })),
      A.visionPipeline.createJob.mutate(jobInput({ analysisPurpose: 'batched 2', creativityLevel: 2 })),
    ]);
    assertCreated(j1, 'first createJob');
    assertCreated(j2, 'second createJob');
    assert(j1.jobId !== j2.jobId, `same jobId ${j1.jobId} for both`);
    eq(expectOneRequest(A, 200).method, 'POST', 'method');
  });
  await t('batch: createJob valid + invalid -> one succeeds, one BAD_REQUEST, 207', async () => {
    takeLog(A);
    const [good, bad] = await settleAll([
      A.visionPipeline.createJob.mutate(jobInput({ analysisPurpose: 'batched 3' })),
      A.visionPipeline.createJob.mutate(jobInput({ outputFormat: 'poem' })),
    ]);
    assert(good.status === 'fulfilled', `valid createJob: ${describeError(good.reason)}`);
    assertCreated(good.value);
    expectSettledError(bad, { code: 'BAD_REQUEST', path: 'visionPipeline.createJob' }, 'invalid createJob');
    expectOneRequest(A, 207);
  });
  await t('batch: mutation-as-query beside a query -> request-level 400 given to every call', async () => {
    // Genuine tRPC rejects the whole GET batch (TRPC_WIRE §3.3): one non-array error object,
    // which the client hands to every operation.
    takeLog(A);
    const results = await settleAll([
      A.visionPipeline.createJob.query(jobInput()),
      A.auth.me.query(),
    ]);
    const expected = { code: 'BAD_REQUEST', message: 'Cannot mix procedure types in call: mutation, query' };
    results.forEach((r, i) => {
      expectSettledError(r, expected, `call ${i}`);
      eq(r.reason.data.path, undefined, `call ${i} data.path (request-level errors have none)`);
    });
    expectOneRequest(A, 400);
  });
}

// ------------------------------------------- image sent as a data: URL (the frontend's way)

async function dataUrlCheck() {
  const tf = 'superjson1';
  const A = makeClient({ link: httpBatchLink, transformer: TRANSFORMERS[tf], token: tokenA });
  await check(`[batch/${tf}] createJob with a data:image/png;base64 URL completes with a red palette`, async () => {
    assert(imageBytes, 'the image could not be fetched (see setup)');
    const dataUrl = `data:image/png;base64,${imageBytes.toString('base64')}`;
    const created = await A.visionPipeline.createJob.mutate(jobInput({ imageUrl: dataUrl }));
    assertCreated(created);
    assertCompleteRedJob(await pollUntilComplete(A, created.jobId, true), true);
  }, POLL_FOR_MS + 10_000);
}

// ------------------------------------------------------------------ main

process.on('unhandledRejection', (err) => {
  failed++;
  console.log(`not ok - unhandled rejection: ${oneLine(describeError(err))}`);
});

try {
  await setup();
  for (const linkName of Object.keys(LINKS)) {
    for (const tfName of Object.keys(TRANSFORMERS)) {
      await suite(linkName, tfName);
    }
  }
  await dataUrlCheck();
} catch (err) {
  failed++;
  console.log(`not ok - harness crashed: ${oneLine(describeError(err))}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
