// The same ingest, session lookup and claim through Drizzle ORM on node-postgres, driven by
// `cargo run -p bench` (bench/src/drizzle.rs) round by round, interleaved with the Rust side.
//
// Protocol: one JSON command a line on stdin, one JSON answer a line on stdout ("ready" first).
//   {"case":"ingest","variant":"plain"|"prepared","rows":N}  -> {"seconds":s,"delivered":n,"inserted":n}
//   {"case":"lookup","variant":...,"iterations":N}           -> {"micros":[...]}
//   {"case":"claim","variant":...,"iterations":N}            -> {"micros":[...]}
// The caller prepares the table before each command (emptied for ingest, refilled for claim).
//
// Two variants of every case: "plain", the query builder as the Drizzle documentation writes it,
// and "prepared", the fastest a Drizzle user can write: `.prepare()`d statements (named, so
// parsed once per connection) and the claim as one statement (a `$with` CTE) instead of two.
import { createInterface } from "node:readline";
import { and, asc, eq, gt, inArray, lte, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import { boolean, integer, jsonb, pgTable, text, timestamp, uuid, varchar } from "drizzle-orm/pg-core";
import pg from "pg";

const tz = { withTimezone: true };
const users = pgTable("users", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  email: text("email").notNull(),
  emailVerified: boolean("email_verified").notNull(),
  image: text("image"),
  twoFactorEnabled: boolean("two_factor_enabled").notNull(),
  createdAt: timestamp("created_at", tz).notNull(),
  updatedAt: timestamp("updated_at", tz).notNull(),
});
const sessions = pgTable("sessions", {
  id: text("id").primaryKey(),
  expiresAt: timestamp("expires_at", tz).notNull(),
  token: text("token").notNull(),
  ipAddress: text("ip_address"),
  userAgent: text("user_agent"),
  userId: text("user_id").notNull(),
  activeOrganizationId: text("active_organization_id"),
  createdAt: timestamp("created_at", tz).notNull(),
  updatedAt: timestamp("updated_at", tz).notNull(),
});
const slackEvents = pgTable("slack_events", {
  id: uuid("id").primaryKey().defaultRandom(),
  slackConnectionId: uuid("slack_connection_id"),
  eventId: text("event_id").notNull(),
  eventType: varchar("event_type", { length: 128 }).notNull(),
  teamId: text("team_id").notNull(),
  channelId: text("channel_id"),
  slackUserId: text("slack_user_id"),
  payload: jsonb("payload").notNull(),
  status: varchar("status", { length: 32 }).notNull().default("pending"),
  attempts: integer("attempts").notNull().default(0),
  lastError: text("last_error"),
  processedAt: timestamp("processed_at", tz),
  createdAt: timestamp("created_at", tz).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", tz).notNull().defaultNow(),
  dueAt: timestamp("due_at", tz).notNull().defaultNow(),
});

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const db = drizzle(pool);

// The Rust bench's `overhead::delivery`, field for field.
const delivery = (n) => ({
  eventId: `Ev${String(n).padStart(9, "0")}`,
  eventType: "message",
  teamId: "T1",
  channelId: "C1",
  slackUserId: "U1",
  slackConnectionId: null,
  payload: { type: "event_callback", event: { type: "message", text: "hello there", ts: String(n) } },
});
// The Rust bench's `throughput::batches`: batches of `size` with 10% repeats of the batch before.
function* batches(rows, size) {
  const fresh = size - Math.floor(size / 10);
  for (let b = 0; b < Math.floor(rows / size); b++) {
    const start = b * fresh;
    const repeats = b === 0 ? 0 : start - Math.floor(size / 10);
    const batch = [];
    for (let n = start; n < start + fresh; n++) batch.push(delivery(n));
    for (let n = repeats; n < repeats + Math.floor(size / 10); n++) batch.push(delivery(n));
    yield batch;
  }
}
const micros = (start) => Number(process.hrtime.bigint() - start) / 1000;

// Plain: the builder, one multi-row VALUES statement per batch.
const insertPlain = (batch) =>
  db.insert(slackEvents).values(batch).onConflictDoNothing({ target: slackEvents.eventId })
    .returning({ id: slackEvents.id, eventId: slackEvents.eventId });

// Prepared: the same statement with one placeholder per value, prepared once per batch size.
const ingestColumns = ["eventId", "eventType", "teamId", "channelId", "slackUserId", "slackConnectionId", "payload"];
const preparedInserts = new Map();
function preparedInsert(size) {
  if (!preparedInserts.has(size)) {
    const rows = [];
    for (let i = 0; i < size; i++) {
      rows.push(Object.fromEntries(ingestColumns.map((c) => [c, sql.placeholder(`${c}${i}`)])));
    }
    preparedInserts.set(size, db.insert(slackEvents).values(rows)
      .onConflictDoNothing({ target: slackEvents.eventId })
      .returning({ id: slackEvents.id, eventId: slackEvents.eventId })
      .prepare(`ingest_${size}`));
  }
  return preparedInserts.get(size);
}
const placeholderValues = (batch) => {
  const values = {};
  batch.forEach((d, i) => ingestColumns.forEach((c) => { values[`${c}${i}`] = d[c]; }));
  return values;
};

async function ingest(variant, rows) {
  const size = Math.min(1000, rows);
  let delivered = 0;
  let inserted = 0;
  const start = process.hrtime.bigint();
  for (const batch of batches(rows, size)) {
    delivered += batch.length;
    const returned = variant === "prepared"
      ? await preparedInsert(batch.length).execute(placeholderValues(batch))
      : await insertPlain(batch);
    inserted += returned.length;
  }
  return { seconds: micros(start) / 1e6, delivered, inserted };
}

const lookupWhere = (token) => and(eq(sessions.token, token), gt(sessions.expiresAt, new Date()));
const lookupPrepared = db.select().from(sessions).innerJoin(users, eq(sessions.userId, users.id))
  .where(and(eq(sessions.token, sql.placeholder("token")), gt(sessions.expiresAt, sql.placeholder("now"))))
  .limit(1).prepare("session_lookup");

// The seeded users' valid sessions, read as the Rust side reads them (`seed::base`).
let tokens;
async function seededTokens() {
  tokens ??= (await pool.query(
    "SELECT token FROM sessions WHERE expires_at > now() ORDER BY id LIMIT 1000",
  )).rows.map((r) => r.token);
  return tokens;
}

async function lookup(variant, iterations) {
  const samples = [];
  const seeded = await seededTokens();
  for (let i = 0; i < iterations; i++) {
    const token = seeded[i % seeded.length];
    const start = process.hrtime.bigint();
    const found = variant === "prepared"
      ? await lookupPrepared.execute({ token, now: new Date() })
      : await db.select().from(sessions).innerJoin(users, eq(sessions.userId, users.id))
        .where(lookupWhere(token)).limit(1);
    samples.push(micros(start));
    if (found.length !== 1) throw new Error(`session ${token} not found`);
  }
  return { micros: samples };
}

// What ours claims: events due now (pending ones, and processing ones whose lease ran out), in
// due order, leased for 5 minutes (`events::claim`; its attempts limit is off by default).
const due = () => and(inArray(slackEvents.status, ["pending", "processing"]), lte(slackEvents.dueAt, sql`now()`));
const claimed = { status: "processing", attempts: sql`${slackEvents.attempts} + 1`, dueAt: sql`now() + interval '5 minutes'` };

// Plain: the documented pattern, in a transaction: SELECT ... FOR UPDATE SKIP LOCKED, then
// UPDATE ... WHERE id IN (the ids) RETURNING.
async function claimPlain(tx) {
  const next = await tx.select({ id: slackEvents.id }).from(slackEvents)
    .where(due()).orderBy(asc(slackEvents.dueAt), asc(slackEvents.id))
    .limit(10).for("update", { skipLocked: true });
  return tx.update(slackEvents).set(claimed)
    .where(inArray(slackEvents.id, next.map((r) => r.id))).returning();
}
// Prepared: one statement, as ours is: WITH next AS (SELECT ... SKIP LOCKED) UPDATE ... RETURNING.
// A prepared query belongs to the session it was built on, so it is built on the transaction;
// its name makes node-postgres parse it once per connection and only bind it afterwards.
const claimNext = db.$with("next").as(db.select({ id: slackEvents.id }).from(slackEvents)
  .where(due()).orderBy(asc(slackEvents.dueAt), asc(slackEvents.id))
  .limit(sql.placeholder("limit")).for("update", { skipLocked: true }));
const claimPrepared = (tx) => tx.with(claimNext).update(slackEvents).set(claimed)
  .where(inArray(slackEvents.id, tx.select({ id: claimNext.id }).from(claimNext)))
  .returning().prepare("claim");

class Rollback extends Error {}
async function claim(variant, iterations) {
  const samples = [];
  for (let i = 0; i < iterations; i++) {
    // Timed as ours is: BEGIN and the claim; the rollback (keeping the pending set) is not.
    const start = process.hrtime.bigint();
    try {
      await db.transaction(async (tx) => {
        const claimed = variant === "prepared"
          ? await claimPrepared(tx).execute({ limit: 10 })
          : await claimPlain(tx);
        samples.push(micros(start));
        if (claimed.length !== 10) throw new Error(`claimed ${claimed.length} events, not 10`);
        throw new Rollback();
      });
    } catch (err) {
      if (!(err instanceof Rollback)) throw err;
    }
  }
  return { micros: samples };
}

const cases = { ingest, lookup, claim };
const answer = (value) => process.stdout.write(`${JSON.stringify(value)}\n`);
// Every connection of the pool opened before the first timed call.
await Promise.all(Array.from({ length: 4 }, () => pool.query("SELECT 1")));
answer("ready");
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  const run = cases[command.case];
  if (!run) throw new Error(`unknown case ${command.case}`);
  answer(await run(command.variant, command.rows ?? command.iterations));
}
await pool.end();
