#!/usr/bin/env node
// Live-progress test: the genuine @trpc/client 11 httpSubscriptionLink (with the `eventsource`
// package as Node's EventSource) and httpBatchStreamLink against vision-pipeline servers, with
// superjson 1.13.3, superjson 2.x and no transformer (TRPC_WIRE §6, §7).
//
// usage: node subscribe.mjs <mainUrl> <dropUrl> <idleUrl> <tokenA> <tokenB> <imageBase>
//   mainUrl   /api/trpc of a server with the default SSE settings
//   dropUrl   /api/trpc of a server that ends every stream after a moment without `return`
//             (SSE_MAX_DURATION_MS): the EventSource reconnects with Last-Event-ID
//   idleUrl   /api/trpc of a server without pings and a short reconnectAfterInactivityMs:
//             the client re-creates the stream with input.lastEventId
//   tokenA/B  session JWTs of two users (valid on all three servers)
//   imageBase http base of the test image server (/red.png, /slow/<s>/red.png)
//
// Output: `ok - <name>` or `not ok - <name>: <detail>` per check, then `N passed, M failed`.

import { inspect, isDeepStrictEqual } from 'node:util';
import {
  createTRPCClient, httpBatchLink, httpBatchStreamLink, httpSubscriptionLink, splitLink,
  TRPCClientError,
} from '@trpc/client';
import { EventSource } from 'eventsource'; // 3.0.7, pinned
import * as superjson1 from 'superjson'; // 1.13.3, what the frontend ships
import * as superjson2 from 'superjson2'; // npm:superjson@2.2.x

const [mainUrl, dropUrl, idleUrl, tokenA, tokenB, imageBase] = process.argv.slice(2);
if (!imageBase) {
  console.error('usage: node subscribe.mjs <mainUrl> <dropUrl> <idleUrl> <tokenA> <tokenB> <imageBase>');
  process.exit(2);
}

const CHECK_TIMEOUT_MS = 40_000;
const ORDER = ['pending', 'gemini_analyzing', 'deepseek_generating', 'complete'];
const PROGRESS = { pending: 0, gemini_analyzing: 25, deepseek_generating: 60, complete: 100 };
const TRANSFORMERS = { superjson1, superjson2, none: null };

// ---------------------------------------------------------------- harness

let passed = 0;
let failed = 0;
class Fail extends Error {}
const show = (v) => inspect(v, { depth: 5, breakLength: Infinity, compact: true, maxStringLength: 200 }).slice(0, 500);
const assert = (cond, detail) => { if (!cond) throw new Fail(detail); };
const eq = (a, b, what) => assert(isDeepStrictEqual(a, b), `${what}: expected ${show(b)}, got ${show(a)}`);

async function check(name, fn, timeoutMs = CHECK_TIMEOUT_MS) {
  let timer;
  try {
    await Promise.race([fn(), new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Fail(`timed out after ${timeoutMs} ms`)), timeoutMs);
    })]);
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    const detail = err instanceof Fail ? err.message : `unexpected ${err?.stack?.split('\n').slice(0, 3).join(' ') ?? show(err)}`;
    console.log(`not ok - ${name}: ${String(detail).replace(/\s*\n\s*/g, ' ')}`);
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------- clients

/** A client as a frontend would build it: subscriptions over SSE, the rest batched. */
function makeClient(url, { token, transformer, stream = false }) {
  const auth = token ? { authorization: `Bearer ${token}` } : {};
  const tf = transformer ? { transformer } : {};
  return createTRPCClient({
    links: [
      splitLink({
        condition: (op) => op.type === 'subscription',
        true: httpSubscriptionLink({
          url, EventSource, ...tf,
          // The eventsource package takes a fetch: that is how Node sends a header.
          eventSourceOptions: () => ({
            fetch: (input, init) => fetch(input, { ...init, headers: { ...init?.headers, ...auth } }),
          }),
        }),
        false: (stream ? httpBatchStreamLink : httpBatchLink)({ url, headers: () => auth, ...tf }),
      }),
    ],
  });
}

/**
 * Subscribes and records everything until onComplete/onError or `until(events)` is true.
 * Resolves { events, started, error, completed }; events are the tracked `{id, data}` values.
 */
function record(procedure, input, { until } = {}) {
  return new Promise((resolve) => {
    const out = { events: [], started: 0, error: null, completed: false };
    let sub;
    const finish = () => { sub?.unsubscribe(); resolve(out); };
    sub = procedure.subscribe(input, {
      onStarted: () => { out.started++; },
      onData: (value) => {
        out.events.push(value);
        if (until?.(out.events)) setImmediate(finish);
      },
      onError: (err) => { out.error = err; finish(); },
      onComplete: () => { out.completed = true; finish(); },
    });
  });
}

/** Resolves once a subscription has started (its `connected` arrived), with a stop(). */
function startRecording(procedure, input, until) {
  const out = { events: [], started: 0, error: null };
  let resolveDone;
  const done = new Promise((r) => { resolveDone = r; });
  return new Promise((resolveStarted) => {
    const sub = procedure.subscribe(input, {
      onStarted: () => { out.started++; resolveStarted({ out, done, stop: () => sub.unsubscribe() }); },
      onData: (value) => { out.events.push(value); if (until(out.events)) resolveDone(out); },
      onError: (err) => { out.error = err; resolveDone(out); },
    });
  });
}

const job = (image) => ({
  imageUrl: `${imageBase}${image}`, analysisPurpose: 'live progress test',
  outputFormat: 'bullet_points', creativityLevel: 1,
});

function assertDate(v, sj, what) {
  if (sj) assert(v instanceof Date && !Number.isNaN(v.getTime()), `${what} should be a Date, got ${show(v)}`);
  else assert(typeof v === 'string' && /Z$/.test(v), `${what} should be an ISO string, got ${show(v)}`);
}

/** Tracked events in order: ids strictly increasing, statuses and progress along ORDER. */
function assertProgression(events, what) {
  const ids = events.map((e) => Number(e.id));
  assert(ids.every((id, i) => Number.isInteger(id) && (i === 0 || id > ids[i - 1])),
    `${what}: ids should be strictly increasing integers, got ${show(events.map((e) => e.id))}`);
  const statuses = events.map((e) => e.data.status);
  const ranks = statuses.map((s) => ORDER.indexOf(s));
  assert(ranks.every((r, i) => r >= 0 && (i === 0 || r > ranks[i - 1])),
    `${what}: statuses should move forward along ${ORDER}, got ${show(statuses)}`);
  for (const e of events) eq(e.data.progress, PROGRESS[e.data.status], `${what}: progress of ${e.data.status}`);
}

function assertTrpcError(err, code, message) {
  assert(err instanceof TRPCClientError, `expected TRPCClientError ${code}, got ${show(err)}`);
  eq(err.data?.code, code, 'error data.code');
  if (message !== undefined) eq(err.message, message, 'error message');
}

/** Every event of a job so far, replayed with input.lastEventId = '0'. */
async function history(client, jobId) {
  const r = await record(client.visionPipeline.onJobProgress, { jobId, lastEventId: '0' });
  assert(r.completed, `the replay of a finished job should complete, got ${show(r.error ?? r.events)}`);
  return r.events;
}

// ---------------------------------------------------------------- checks

async function suite(tfName) {
  const tf = TRANSFORMERS[tfName];
  const sj = tf !== null;
  const A = makeClient(mainUrl, { token: tokenA, transformer: tf });
  const B = makeClient(mainUrl, { token: tokenB, transformer: tf });
  const anon = makeClient(mainUrl, { token: null, transformer: tf });
  let jobId;

  await check(`[${tfName}] onMyJobs sees a new job from pending to complete, in order`, async () => {
    let id;
    const rec = await startRecording(A.visionPipeline.onMyJobs, undefined,
      (events) => events.some((e) => e.data.jobId === id && e.data.status === 'complete'));
    ({ jobId: id } = await A.visionPipeline.createJob.mutate(job('/slow/0.3/red.png')));
    const out = await rec.done;
    rec.stop();
    assert(!out.error, `unexpected error ${show(out.error)}`);
    const mine = out.events.filter((e) => e.data.jobId === id);
    eq(mine.map((e) => e.data.status), ORDER, 'statuses');
    assertProgression(mine, 'onMyJobs');
    const last = mine.at(-1).data;
    assert(Array.isArray(last.deepseekOutput) && last.deepseekOutput.length > 0, `complete carries deepseekOutput, got ${show(last.deepseekOutput)}`);
    assertDate(last.completedAt, sj, 'completedAt');
    eq(mine[0].data.deepseekOutput, null, 'pending has no deepseekOutput');
  });

  await check(`[${tfName}] onJobProgress: current state at once, every change, then return`, async () => {
    ({ jobId } = await A.visionPipeline.createJob.mutate(job('/slow/0.5/red.png')));
    const r = await record(A.visionPipeline.onJobProgress, { jobId });
    assert(!r.error, `unexpected error ${show(r.error)}`);
    assert(r.completed, 'the subscription should complete (event: return)');
    assertProgression(r.events, 'onJobProgress');
    eq(r.events.at(-1).data.status, 'complete', 'last status');
    assert(r.events.length >= 2, `a job with a slow image should show more than its end, got ${show(r.events.map((e) => e.data.status))}`);
    for (const e of r.events) assertDate(e.data.createdAt, sj, 'createdAt');
    // The last event is exactly what getJobStatus answers.
    eq(r.events.at(-1).data, await A.visionPipeline.getJobStatus.query({ jobId }), 'final event vs getJobStatus');
  });

  await check(`[${tfName}] input.lastEventId replays the rest of the history, nothing else`, async () => {
    assert(jobId, 'needs the job of the previous check');
    const all = await history(A, jobId);
    eq(all.map((e) => e.data.status), ORDER, 'full history');
    for (let k = 0; k < all.length; k++) {
      const r = await record(A.visionPipeline.onJobProgress, { jobId, lastEventId: all[k].id });
      assert(r.completed && !r.error, `resume after ${all[k].id} should complete, got ${show(r.error)}`);
      eq(r.events.map((e) => e.id), all.slice(k + 1).map((e) => e.id), `ids after ${all[k].id}`);
    }
  });

  await check(`[${tfName}] no session: UNAUTHORIZED "Please login (10001)"`, async () => {
    const r = await record(anon.visionPipeline.onJobProgress, { jobId: jobId ?? 1 });
    eq(r.events, [], 'events');
    assertTrpcError(r.error, 'UNAUTHORIZED', 'Please login (10001)');
    const mine = await record(anon.visionPipeline.onMyJobs, undefined);
    assertTrpcError(mine.error, 'UNAUTHORIZED', 'Please login (10001)');
  });

  await check(`[${tfName}] another user's job: FORBIDDEN; a missing one: NOT_FOUND`, async () => {
    const r = await record(B.visionPipeline.onJobProgress, { jobId });
    eq(r.events, [], 'events');
    assertTrpcError(r.error, 'FORBIDDEN', 'You do not have access to this job');
    const missing = await record(A.visionPipeline.onJobProgress, { jobId: 999999999 });
    assertTrpcError(missing.error, 'NOT_FOUND', 'Job not found');
  });

  await check(`[${tfName}] httpBatchStreamLink: results and errors of one batch`, async () => {
    const S = makeClient(mainUrl, { token: tokenA, transformer: tf, stream: true });
    const [own, missing, foreign, unknown, hist] = await Promise.allSettled([
      S.visionPipeline.getJobStatus.query({ jobId }),
      S.visionPipeline.getJobStatus.query({ jobId: 999999999 }),
      makeClient(mainUrl, { token: tokenB, transformer: tf, stream: true }).visionPipeline.getJobStatus.query({ jobId }),
      S.nope.query(),
      S.visionPipeline.getJobHistory.query({ limit: 100 }),
    ]);
    assert(own.status === 'fulfilled', `own job: ${show(own.reason)}`);
    eq(own.value, await A.visionPipeline.getJobStatus.query({ jobId }), 'streamed vs batched getJobStatus');
    assertDate(own.value.createdAt, sj, 'createdAt');
    assertTrpcError(missing.reason, 'NOT_FOUND', 'Job not found');
    assertTrpcError(foreign.reason, 'FORBIDDEN');
    assertTrpcError(unknown.reason, 'NOT_FOUND', 'No procedure found on path "nope"');
    assert(hist.status === 'fulfilled' && hist.value.some((j) => j.jobId === jobId), `history: ${show(hist.reason ?? hist.value)}`);
    const muts = await Promise.allSettled([
      S.visionPipeline.createJob.mutate(job('/red.png')),
      S.visionPipeline.createJob.mutate({ ...job('/red.png'), outputFormat: 'haiku' }),
    ]);
    assert(muts[0].status === 'fulfilled' && muts[0].value.status === 'pending', `createJob: ${show(muts[0])}`);
    assertTrpcError(muts[1].reason, 'BAD_REQUEST');
  });
}

/** A job followed across dropped streams: no event missed, none repeated. */
async function reconnectSuite(url, how, tfName) {
  const tf = TRANSFORMERS[tfName];
  const A = makeClient(url, { token: tokenA, transformer: tf });
  await check(`[${tfName}] ${how}: the client resumes from its last id, nothing missed or repeated`, async () => {
    const { jobId } = await A.visionPipeline.createJob.mutate(job('/slow/2.5/red.png'));
    const r = await record(A.visionPipeline.onJobProgress, { jobId });
    assert(!r.error && r.completed, `should complete, got ${show(r.error)}`);
    assert(r.started >= 2, `the stream should have been re-opened at least once (started ${r.started} times)`);
    assertProgression(r.events, how);
    const all = await history(A, jobId);
    const from = all.findIndex((e) => e.id === r.events[0].id);
    assert(from >= 0, `the first event ${show(r.events[0])} is not in the history`);
    eq(r.events.map((e) => e.id), all.slice(from).map((e) => e.id), 'ids vs history');
    eq(r.events.at(-1).data.status, 'complete', 'last status');
  }, 60_000);
}

// ---------------------------------------------------------------- main

process.on('unhandledRejection', (err) => {
  failed++;
  console.log(`not ok - unhandled rejection: ${show(err)}`);
});

try {
  for (const tfName of Object.keys(TRANSFORMERS)) await suite(tfName);
  for (const tfName of ['superjson1', 'none']) {
    await reconnectSuite(dropUrl, 'stream dropped without return (Last-Event-ID)', tfName);
    await reconnectSuite(idleUrl, 'reconnect after inactivity (input.lastEventId)', tfName);
  }
} catch (err) {
  failed++;
  console.log(`not ok - harness crashed: ${show(err)}`);
}
console.log(`${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 && passed > 0 ? 0 : 1;
