// The design document's own stack, as the API benchmark's baseline: @trpc/server 11 on its
// standalone adapter, superjson 1.13.3, zod, better-sqlite3 12. It answers the design
// document's getJobStatus and getJobHistory from the same SQLite rows the Python server reads.
//
//   DATABASE_PATH=/path/jobs.db JWT_SECRET=… PORT=3100 node server.mjs
//
// Per request, as the design document's protectedProcedure does: verify the HS256 session
// token (node:crypto), look the user up by openId, then run the procedure's query. (The
// template's authenticateRequest also writes lastSignedIn on every request; that write is
// left out here, which only makes this baseline faster.)
import { createHmac, timingSafeEqual } from "node:crypto";
import Database from "better-sqlite3";
import superjson from "superjson";
import { initTRPC, TRPCError } from "@trpc/server";
import { createHTTPServer } from "@trpc/server/adapters/standalone";
import { z } from "zod";

const secret = process.env.JWT_SECRET ?? "";
const db = new Database(process.env.DATABASE_PATH, { readonly: true, fileMustExist: true });
db.pragma("busy_timeout = 2000");

const userByOpenId = db.prepare('SELECT id, "openId", name, role FROM users WHERE "openId" = ?');
const jobById = db.prepare(
  `SELECT id, "userId", status, progress, "geminOutput", "deepseekOutput", "errorMessage",
     "createdAt", "completedAt" FROM "visionJobs" WHERE id = ?`,
);
const jobsOfUser = db.prepare(
  `SELECT id, status, progress, "imageUrl", "analysisPurpose", "createdAt", "completedAt"
   FROM "visionJobs" WHERE "userId" = ? ORDER BY "createdAt", id LIMIT ? OFFSET ?`,
);

// SQLite rows hold UTC text "YYYY-MM-DD HH:MM:SS.ffffff".
const asDate = (text) => (text == null ? null : new Date(text.replace(" ", "T") + "Z"));

function verifySession(token) {
  const parts = token.split(".");
  if (parts.length !== 3) return null;
  const expected = createHmac("sha256", secret).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
  const header = JSON.parse(Buffer.from(parts[0], "base64url").toString());
  if (header.alg !== "HS256") return null;
  const claims = JSON.parse(Buffer.from(parts[1], "base64url").toString());
  if (typeof claims.exp === "number" && claims.exp * 1000 < Date.now()) return null;
  return typeof claims.openId === "string" && claims.openId ? claims : null;
}

function createContext({ req }) {
  const auth = req.headers.authorization ?? "";
  const claims = auth.startsWith("Bearer ") ? verifySession(auth.slice(7)) : null;
  const user = claims ? (userByOpenId.get(claims.openId) ?? null) : null;
  return { user };
}

const t = initTRPC.context().create({ transformer: superjson });
const protectedProcedure = t.procedure.use(({ ctx, next }) => {
  if (!ctx.user) throw new TRPCError({ code: "UNAUTHORIZED", message: "Please login (10001)" });
  return next({ ctx: { user: ctx.user } });
});

const appRouter = t.router({
  visionPipeline: t.router({
    getJobStatus: protectedProcedure
      .input(z.object({ jobId: z.number() }))
      .query(({ ctx, input }) => {
        const job = jobById.get(input.jobId);
        if (!job) throw new TRPCError({ code: "NOT_FOUND", message: "Job not found" });
        if (job.userId !== ctx.user.id) {
          throw new TRPCError({ code: "FORBIDDEN", message: "You do not have access to this job" });
        }
        return {
          jobId: job.id,
          status: job.status,
          progress: job.progress,
          geminOutput: job.geminOutput ? JSON.parse(job.geminOutput) : null,
          deepseekOutput: job.deepseekOutput ? JSON.parse(job.deepseekOutput) : null,
          errorMessage: job.errorMessage,
          createdAt: asDate(job.createdAt),
          completedAt: asDate(job.completedAt),
        };
      }),
    getJobHistory: protectedProcedure
      .input(z.object({ limit: z.number().default(20), offset: z.number().default(0) }))
      .query(({ ctx, input }) =>
        jobsOfUser.all(ctx.user.id, input.limit, input.offset).map((job) => ({
          jobId: job.id,
          status: job.status,
          progress: job.progress,
          imageUrl: job.imageUrl,
          analysisPurpose: job.analysisPurpose,
          createdAt: asDate(job.createdAt),
          completedAt: asDate(job.completedAt),
        })),
      ),
  }),
});

const server = createHTTPServer({ router: appRouter, createContext, basePath: "/api/trpc/" });
const port = Number(process.env.PORT ?? 3100);
server.listen(port, "127.0.0.1");
console.log(`node baseline listening on ${port}`);
