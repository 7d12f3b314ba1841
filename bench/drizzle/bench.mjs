// The seed's own stack: Drizzle ORM on node-postgres, with the same statements and data as the
// Rust bench. Run by `cargo run -p bench` with DATABASE_URL, ROWS and ITERATIONS set; prints one
// JSON line of figures.
import { and, asc, eq, gt, inArray, sql } from "drizzle-orm";
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
});

const rows = Number(process.env.ROWS ?? 20000);
const iterations = Number(process.env.ITERATIONS ?? 300);
const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });
const db = drizzle(pool);

const delivery = (n) => ({
  eventId: `Ev${String(n).padStart(9, "0")}`,
  eventType: "message",
  teamId: "T1",
  channelId: "C1",
  slackUserId: "U1",
  slackConnectionId: null,
  payload: { type: "event_callback", event: { type: "message", text: "hello there", ts: String(n) } },
});
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * q)];
};
const micros = (start) => Number(process.hrtime.bigint() - start) / 1000;

// Ingest: batches of 1000 with 10% repeats of the batch before, as the Rust bench.
const size = Math.min(1000, rows);
const fresh = size - Math.floor(size / 10);
await db.execute(sql`TRUNCATE slack_events CASCADE`);
let delivered = 0;
const ingestStart = process.hrtime.bigint();
for (let b = 0; b < Math.floor(rows / size); b++) {
  const start = b * fresh;
  const repeats = b === 0 ? 0 : start - Math.floor(size / 10);
  const batch = [];
  for (let n = start; n < start + fresh; n++) batch.push(delivery(n));
  for (let n = repeats; n < repeats + Math.floor(size / 10); n++) batch.push(delivery(n));
  delivered += batch.length;
  await db.insert(slackEvents).values(batch).onConflictDoNothing({ target: slackEvents.eventId })
    .returning({ id: slackEvents.id, eventId: slackEvents.eventId });
}
const ingestSeconds = micros(ingestStart) / 1e6;

// Session by token with its user: the seeded users' valid sessions, as the Rust side reads them.
const { rows: seededSessions } = await pool.query(
  "SELECT token FROM sessions WHERE expires_at > now() ORDER BY id LIMIT 1000",
);
const tokens = seededSessions.map((r) => r.token);
const lookups = [];
for (let i = 0; i < iterations; i++) {
  const start = process.hrtime.bigint();
  const found = await db.select().from(sessions).innerJoin(users, eq(sessions.userId, users.id))
    .where(and(eq(sessions.token, tokens[i % tokens.length]), gt(sessions.expiresAt, new Date()))).limit(1);
  lookups.push(micros(start));
  if (found.length !== 1) throw new Error(`seeded session ${i % tokens.length} not found`);
}

// Claim 10 pending, rolled back so the pending set stays the same.
await db.execute(sql`UPDATE slack_events SET status = 'pending'`);
const claims = [];
class Rollback extends Error {}
for (let i = 0; i < iterations; i++) {
  const start = process.hrtime.bigint();
  try {
    await db.transaction(async (tx) => {
      const next = await tx.select({ id: slackEvents.id }).from(slackEvents)
        .where(eq(slackEvents.status, "pending")).orderBy(asc(slackEvents.createdAt), asc(slackEvents.id))
        .limit(10).for("update", { skipLocked: true });
      await tx.update(slackEvents)
        .set({ status: "processing", attempts: sql`${slackEvents.attempts} + 1` })
        .where(inArray(slackEvents.id, next.map((r) => r.id))).returning();
      claims.push(micros(start));
      throw new Rollback();
    });
  } catch (err) {
    if (!(err instanceof Rollback)) throw err;
  }
}
await pool.end();
console.log(JSON.stringify({
  ingest_rows: delivered,
  ingest_rows_per_s: delivered / ingestSeconds,
  lookup_p50_us: quantile(lookups, 0.5),
  lookup_p99_us: quantile(lookups, 0.99),
  claim_p50_us: quantile(claims, 0.5),
  claim_p99_us: quantile(claims, 0.99),
}));
