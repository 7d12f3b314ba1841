// The same ingest, session lookup and claim through Drizzle ORM on node-postgres, driven by
// `cargo run -p bench` (bench/src/drizzle.rs) round by round, interleaved with the Rust side.
//
// Protocol: one JSON command a line on stdin, one JSON answer a line on stdout ("ready" first).
//   {"case":"ingest","variant":"plain"|"prepared","rows":N}  -> {"seconds":s,"delivered":n,"inserted":n}
//   {"case":"lookup","variant":...,"iterations":N}           -> {"micros":[...]}
//   {"case":"claim","variant":...,"iterations":N,"organization":id} -> {"micros":[...]}
// The caller prepares the table before each command (emptied for ingest, refilled for claim).
//
// The ingest does what ours does (`events::ingest_batch`), as a Drizzle user writes it: it looks
// up the routes of the batch's Slack teams (`webhook_routes`: which organization and connection
// receive a team's deliveries), inserts the routed deliveries for their organization and
// connection, keeps the others in `unrouted_events`, and notifies each organization that got
// new rows (`pg_notify('slack_events', <organization id>)`): a statement each, where ours is one.
//
// Two variants of every case: "plain", the query builder as the Drizzle documentation writes it,
// and "prepared", the fastest a Drizzle user can write: `.prepare()`d statements (named, so
// parsed once per connection) and the claim as one statement (a `$with` CTE) instead of two.
import { createInterface } from "node:readline";
import { and, asc, eq, gt, inArray, lte, sql } from "drizzle-orm";
import { drizzle } from "drizzle-orm/node-postgres";
import {
  boolean, integer, jsonb, pgTable, primaryKey, text, timestamp, uuid, varchar,
} from "drizzle-orm/pg-core";
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
  organizationId: text("organization_id").notNull(),
  id: uuid("id").defaultRandom(),
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
}, (t) => [primaryKey({ columns: [t.organizationId, t.id] })]);
const webhookRoutes = pgTable("webhook_routes", {
  provider: text("provider").notNull(),
  externalId: text("external_id").notNull(),
  organizationId: text("organization_id").notNull(),
  connectionId: uuid("connection_id").notNull(),
  createdAt: timestamp("created_at", tz).notNull().defaultNow(),
  updatedAt: timestamp("updated_at", tz).notNull().defaultNow(),
}, (t) => [primaryKey({ columns: [t.provider, t.externalId] })]);
const unroutedEvents = pgTable("unrouted_events", {
  id: uuid("id").primaryKey().defaultRandom(),
  provider: text("provider").notNull(),
  eventId: text("event_id").notNull(),
  externalId: text("external_id").notNull(),
  eventType: varchar("event_type", { length: 128 }).notNull(),
  payload: jsonb("payload").notNull(),
  createdAt: timestamp("created_at", tz).notNull().defaultNow(),
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

// The routes of a batch's teams: plain, the builder; prepared, the same `= any($2)` prepared.
const routesOf = (teams) => db.select({
  externalId: webhookRoutes.externalId,
  organizationId: webhookRoutes.organizationId,
  connectionId: webhookRoutes.connectionId,
}).from(webhookRoutes).where(and(eq(webhookRoutes.provider, "slack"), inArray(webhookRoutes.externalId, teams)));
const routesPrepared = db.select({
  externalId: webhookRoutes.externalId,
  organizationId: webhookRoutes.organizationId,
  connectionId: webhookRoutes.connectionId,
}).from(webhookRoutes)
  .where(and(eq(webhookRoutes.provider, "slack"), sql`${webhookRoutes.externalId} = any(${sql.placeholder("teams")})`))
  .prepare("routes");

// Plain: the builder, one multi-row VALUES statement per batch. `ON CONFLICT DO NOTHING` names
// no key, as ours: repeats are skipped on the per-organization key `(organization_id, event_id)`.
const insertPlain = (rows) =>
  db.insert(slackEvents).values(rows).onConflictDoNothing()
    .returning({ organizationId: slackEvents.organizationId, id: slackEvents.id, eventId: slackEvents.eventId });

// Prepared: the same statement with one placeholder per value, prepared once per batch size.
const ingestColumns = [
  "organizationId", "slackConnectionId", "eventId", "eventType", "teamId", "channelId", "slackUserId", "payload",
];
const preparedInserts = new Map();
function preparedInsert(size) {
  if (!preparedInserts.has(size)) {
    const rows = [];
    for (let i = 0; i < size; i++) {
      rows.push(Object.fromEntries(ingestColumns.map((c) => [c, sql.placeholder(`${c}${i}`)])));
    }
    preparedInserts.set(size, db.insert(slackEvents).values(rows)
      .onConflictDoNothing()
      .returning({ organizationId: slackEvents.organizationId, id: slackEvents.id, eventId: slackEvents.eventId })
      .prepare(`ingest_${size}`));
  }
  return preparedInserts.get(size);
}
const placeholderValues = (rows) => {
  const values = {};
  rows.forEach((d, i) => ingestColumns.forEach((c) => { values[`${c}${i}`] = d[c]; }));
  return values;
};

// One batch, routed: returns how many deliveries were stored for an organization.
async function ingestBatch(variant, batch) {
  const teams = [...new Set(batch.map((d) => d.teamId))];
  const routes = variant === "prepared" ? await routesPrepared.execute({ teams }) : await routesOf(teams);
  const byTeam = new Map(routes.map((r) => [r.externalId, r]));
  const routed = [];
  const unrouted = [];
  for (const d of batch) {
    const route = byTeam.get(d.teamId);
    if (route) routed.push({ ...d, organizationId: route.organizationId, slackConnectionId: route.connectionId });
    else unrouted.push(d);
  }
  const inserted = routed.length === 0 ? []
    : variant === "prepared"
      ? await preparedInsert(routed.length).execute(placeholderValues(routed))
      : await insertPlain(routed);
  // The bench's deliveries all have a route, so this branch is not taken (nor timed) here.
  if (unrouted.length > 0) {
    await db.insert(unroutedEvents).values(unrouted.map((d) => ({
      provider: "slack", eventId: d.eventId, externalId: d.teamId, eventType: d.eventType, payload: d.payload,
    }))).onConflictDoNothing();
  }
  for (const organization of new Set(inserted.map((r) => r.organizationId))) {
    await db.execute(sql`select pg_notify('slack_events', ${organization})`);
  }
  return inserted.length;
}

async function ingest(variant, rows) {
  const size = Math.min(1000, rows);
  let delivered = 0;
  let inserted = 0;
  const start = process.hrtime.bigint();
  for (const batch of batches(rows, size)) {
    delivered += batch.length;
    inserted += await ingestBatch(variant, batch);
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

// What ours claims: the organization's events due now (pending ones, and processing ones whose
// lease ran out), in due order, leased for 5 minutes, `updated_at` set (`events::claim`; its
// attempts limit is off by default).
const due = (organization) => and(
  eq(slackEvents.organizationId, organization),
  inArray(slackEvents.status, ["pending", "processing"]),
  lte(slackEvents.dueAt, sql`now()`),
);
const claimed = {
  status: "processing",
  attempts: sql`${slackEvents.attempts} + 1`,
  dueAt: sql`now() + interval '5 minutes'`,
  updatedAt: sql`now()`,
};

// Plain: the documented pattern, in a transaction: SELECT ... FOR UPDATE SKIP LOCKED, then
// UPDATE ... WHERE organization_id = $1 AND id IN (the ids) RETURNING.
async function claimPlain(tx, organization) {
  const next = await tx.select({ id: slackEvents.id }).from(slackEvents)
    .where(due(organization)).orderBy(asc(slackEvents.dueAt), asc(slackEvents.id))
    .limit(10).for("update", { skipLocked: true });
  return tx.update(slackEvents).set(claimed)
    .where(and(eq(slackEvents.organizationId, organization), inArray(slackEvents.id, next.map((r) => r.id))))
    .returning();
}
// Prepared: one statement, as ours is: WITH next AS (SELECT ... SKIP LOCKED) UPDATE ... RETURNING.
// A prepared query belongs to the session it was built on, so it is built on the transaction;
// its name makes node-postgres parse it once per connection and only bind it afterwards.
const claimNext = db.$with("next").as(db.select({ id: slackEvents.id }).from(slackEvents)
  .where(due(sql.placeholder("organization"))).orderBy(asc(slackEvents.dueAt), asc(slackEvents.id))
  .limit(sql.placeholder("limit")).for("update", { skipLocked: true }));
const claimPrepared = (tx) => tx.with(claimNext).update(slackEvents).set(claimed)
  .where(and(
    eq(slackEvents.organizationId, sql.placeholder("organization")),
    inArray(slackEvents.id, tx.select({ id: claimNext.id }).from(claimNext)),
  ))
  .returning().prepare("claim");

class Rollback extends Error {}
async function claim(variant, iterations, organization) {
  const samples = [];
  for (let i = 0; i < iterations; i++) {
    // Timed as ours is: BEGIN and the claim; the rollback (keeping the pending set) is not.
    const start = process.hrtime.bigint();
    try {
      await db.transaction(async (tx) => {
        const claimed = variant === "prepared"
          ? await claimPrepared(tx).execute({ limit: 10, organization })
          : await claimPlain(tx, organization);
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
  answer(await run(command.variant, command.rows ?? command.iterations, command.organization));
}
await pool.end();
