#!/usr/bin/env node
// Uploads with the genuine @trpc/client 11, set up as tRPC documents it for superjson apps
// (https://trpc.io/docs/server/non-json-content-types#client-setup): a splitLink on
// isNonJsonSerializable whose non-JSON httpLink has
// `transformer: {serialize: (d) => d, deserialize: superjson.deserialize}`, JSON calls through
// httpBatchLink with superjson. FormData, Blob and Uint8Array inputs go to
// visionPipeline.uploadImage; createJob then names the returned imageUrl and the job is polled
// to `complete`. Errors (not an image, no session) must reach the client as TRPCClientErrors.
// Runs with superjson 1.13.3 and 2.x.
//
// usage: node upload.mjs <baseUrl> <token> <pngPath>
// Output: one line per check, `ok - <name>` or `not ok - <name>: <detail>`, then
// `N passed, M failed`. Exit code 0 only when M == 0.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { inspect } from 'node:util';
import {
  createTRPCClient,
  httpBatchLink,
  httpLink,
  isNonJsonSerializable,
  splitLink,
  TRPCClientError,
} from '@trpc/client';
import * as superjson1 from 'superjson'; // 1.13.3
import * as superjson2 from 'superjson2'; // 2.2.x

const [baseUrl, token, pngPath] = process.argv.slice(2);
if (!baseUrl || !token || !pngPath) {
  console.error('usage: node upload.mjs <baseUrl> <token> <pngPath>');
  process.exit(2);
}
const png = readFileSync(pngPath);
const sha = createHash('sha256').update(png).digest('hex');

let passed = 0;
let failed = 0;
const show = (v) => inspect(v, { depth: 5, breakLength: Infinity, compact: true });
function assert(cond, detail) {
  if (!cond) throw new Error(detail);
}
async function check(name, fn) {
  try {
    await fn();
    passed += 1;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed += 1;
    console.log(`not ok - ${name}: ${String(err && err.message).replace(/\s*\n\s*/g, ' ')}`);
  }
}

function client(superjson, bearer) {
  const headers = () => (bearer ? { authorization: `Bearer ${bearer}` } : {});
  const sj = superjson.default ?? superjson;
  return createTRPCClient({
    links: [
      splitLink({
        condition: (op) => isNonJsonSerializable(op.input),
        true: httpLink({
          url: baseUrl,
          headers,
          transformer: { serialize: (data) => data, deserialize: (data) => sj.deserialize(data) },
        }),
        false: httpBatchLink({ url: baseUrl, headers, transformer: sj }),
      }),
    ],
  });
}

function expectUpload(result, what) {
  const expected = {
    imageUrl: `/api/images/${sha}`, sha256: sha, bytes: png.length,
    mimeType: 'image/png', width: 64, height: 48,
  };
  assert(JSON.stringify(result) === JSON.stringify(expected),
    `${what}: expected ${show(expected)}, got ${show(result)}`);
}

async function expectError(promise, code, status) {
  try {
    await promise;
  } catch (err) {
    assert(err instanceof TRPCClientError, `not a TRPCClientError: ${show(err)}`);
    assert(err.data?.code === code && err.data?.httpStatus === status,
      `expected ${code}/${status}, got ${show(err.data)} (${err.message})`);
    return err;
  }
  throw new Error(`expected ${code}, the call succeeded`);
}

async function jobCompletes(trpc, imageUrl) {
  const created = await trpc.visionPipeline.createJob.mutate({
    imageUrl, analysisPurpose: 'brand check', outputFormat: 'bullet_points',
  });
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    const job = await trpc.visionPipeline.getJobStatus.query({ jobId: created.jobId });
    if (job.status === 'complete') {
      assert(job.createdAt instanceof Date, `createdAt is not a Date: ${show(job.createdAt)}`);
      return job;
    }
    assert(job.status !== 'error', `the job failed: ${show(job.errorMessage)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error('the job did not complete within 60 s');
}

for (const [label, superjson] of [['superjson 1', superjson1], ['superjson 2', superjson2]]) {
  const trpc = client(superjson, token);
  await check(`${label}: FormData upload, then a job from its imageUrl completes`, async () => {
    const form = new FormData();
    form.append('file', new Blob([png], { type: 'image/png' }), 'brand.png');
    const uploaded = await trpc.visionPipeline.uploadImage.mutate(form);
    expectUpload(uploaded, 'FormData');
    await jobCompletes(trpc, uploaded.imageUrl);
  });
  await check(`${label}: Blob upload`, async () => {
    expectUpload(await trpc.visionPipeline.uploadImage.mutate(new Blob([png])), 'Blob');
  });
  await check(`${label}: Uint8Array upload`, async () => {
    expectUpload(await trpc.visionPipeline.uploadImage.mutate(new Uint8Array(png)), 'Uint8Array');
  });
  await check(`${label}: a file that is not an image is a BAD_REQUEST`, async () => {
    const err = await expectError(
      trpc.visionPipeline.uploadImage.mutate(new Blob(['not an image'])), 'BAD_REQUEST', 400);
    assert(err.message.includes('not an image'), `message: ${err.message}`);
  });
  await check(`${label}: no session is UNAUTHORIZED`, async () => {
    const anonymous = client(superjson, null);
    const form = new FormData();
    form.append('file', new Blob([png]), 'brand.png');
    const err = await expectError(anonymous.visionPipeline.uploadImage.mutate(form),
      'UNAUTHORIZED', 401);
    assert(err.message === 'Please login (10001)', `message: ${err.message}`);
  });
}

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
