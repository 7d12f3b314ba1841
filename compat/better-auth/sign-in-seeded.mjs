// Signs in as users of a database filled by `cargo run -p migration -- seed`, through the real
// `better-auth` package configured as check.mjs configures it (the plural/snake_case mapping,
// the organization and two-factor plugins, verification identifiers stored hashed). Proves the
// seed's password hashes are in Better Auth's own format, its organizations read back through
// the organization plugin, and (1.7) its verification identifiers have the form Better Auth
// writes.
//
//   DATABASE_URL=postgresql://... BETTER_AUTH_PACKAGE=better-auth-1-3 \
//     SEED_EMAIL=demo@example.com SEED_PASSWORD=... node sign-in-seeded.mjs
//
// Prints one line per check, then "N passed, M failed"; exits non-zero when any check failed.
// Never prints the password.
import { CamelCasePlugin, Kysely, PostgresDialect } from "kysely";
import pg from "pg";

const url = process.env.DATABASE_URL;
const email = process.env.SEED_EMAIL;
const password = process.env.SEED_PASSWORD;
if (!url || !email || !password) throw new Error("DATABASE_URL, SEED_EMAIL and SEED_PASSWORD must be set");
const pkg = process.env.BETTER_AUTH_PACKAGE ?? "better-auth";
const { betterAuth } = await import(pkg);
const { organization, twoFactor } = await import(`${pkg}/plugins`);
const { readFileSync } = await import("node:fs");
const { createHash } = await import("node:crypto");
const manifest = new URL(`./node_modules/${pkg}/package.json`, import.meta.url);
const { version } = JSON.parse(readFileSync(manifest, "utf8"));

// `verification.storeIdentifier` is known from 1.7 on (1.4.22 and 1.3.34 ignore it).
const [major, minor] = version.split(".").map(Number);
const hashesIdentifiers = major > 1 || (major === 1 && minor >= 7);

const pool = new pg.Pool({ connectionString: url, max: 4 });
const db = new Kysely({ dialect: new PostgresDialect({ pool }), plugins: [new CamelCasePlugin()] });

const plural = (name) => ({ modelName: `${name}s` });
const resetTokens = [];
const auth = betterAuth({
  baseURL: "http://localhost:3000",
  secret: "compat-check-secret-compat-check-secret",
  database: { db, type: "postgres" },
  user: plural("user"),
  session: plural("session"),
  account: plural("account"),
  verification: { ...plural("verification"), storeIdentifier: "hashed" },
  emailAndPassword: {
    enabled: true,
    sendResetPassword: async ({ token }) => {
      resetTokens.push(token);
    },
  },
  plugins: [
    organization({
      schema: { organization: plural("organization"), member: plural("member"), invitation: plural("invitation") },
    }),
    twoFactor({ schema: { twoFactor: plural("twoFactor") } }),
  ],
  logger: { disabled: true },
});

console.log(`better-auth ${version}`);
let checks = 0;
let failures = 0;
const check = async (name, fn) => {
  checks += 1;
  try {
    await fn();
    console.log(`ok      ${name}`);
  } catch (err) {
    failures += 1;
    console.log(`FAILED  ${name}: ${err?.message ?? err}`);
  }
};
const expect = (cond, message) => {
  if (!cond) throw new Error(message);
};
const signIn = (who, secret) =>
  auth.api.signInEmail({ body: { email: who, password: secret }, asResponse: true });
const cookieOf = (res) => {
  const cookie = res.headers.get("set-cookie");
  expect(cookie, `no session cookie (status ${res.status})`);
  return new Headers({ cookie: cookie.split(";")[0] });
};
const credentialUser = async (twoFactorEnabled) => {
  const { rows } = await pool.query(
    `SELECT u.id, u.email FROM users u JOIN accounts a ON a.user_id = u.id AND a.provider_id = 'credential'
     WHERE u.two_factor_enabled = $1 AND u.email <> $2 ORDER BY u.id LIMIT 1`,
    [twoFactorEnabled, email],
  );
  expect(rows.length === 1, `no seeded credential user with two_factor_enabled = ${twoFactorEnabled}`);
  return rows[0];
};

let demo;
await check(`sign in as ${email} with the seed password`, async () => {
  const res = await signIn(email, password);
  expect(res.ok, `status ${res.status}`);
  demo = cookieOf(res);
  const session = await auth.api.getSession({ headers: demo });
  expect(session?.user?.email === email, "the session is not the seeded user's");
});

await check("the seeded organizations read back through the organization plugin", async () => {
  const organizations = await auth.api.listOrganizations({ headers: demo });
  const acme = organizations.find((o) => o.slug === "acme");
  expect(acme, `no organization "acme" among ${organizations.map((o) => o.slug).join(", ")}`);
  const full = await auth.api.getFullOrganization({ query: { organizationId: acme.id }, headers: demo });
  const { rows } = await pool.query("SELECT count(*)::int AS n FROM members WHERE organization_id = $1", [acme.id]);
  expect(full.members.length === rows[0].n, `${full.members.length} members read, ${rows[0].n} seeded`);
  const owner = full.members.find((m) => m.user.email === email);
  expect(owner?.role === "owner", `${email} is not the owner`);
});

await check("another seeded user signs in with the same password", async () => {
  const other = await credentialUser(false);
  const res = await signIn(other.email, password);
  expect(res.ok, `status ${res.status}`);
  const session = await auth.api.getSession({ headers: cookieOf(res) });
  expect(session?.user?.id === other.id, "the session is not the seeded user's");
});

await check("a seeded user with two-factor enabled is asked for the second factor", async () => {
  const other = await credentialUser(true);
  const res = await signIn(other.email, password);
  expect(res.ok, `status ${res.status}`);
  const body = await res.json();
  expect(body.twoFactorRedirect === true, "no two-factor redirect");
});

if (hashesIdentifiers) {
  await check("the seeded verification identifiers have the form Better Auth writes (hashed)", async () => {
    await auth.api.requestPasswordReset({ body: { email, redirectTo: "/reset" } });
    const token = resetTokens.at(-1);
    expect(token, "no reset token was sent");
    const written = createHash("sha256").update(`reset-password:${token}`).digest("base64url");
    const { rows } = await pool.query("SELECT identifier FROM verifications");
    const identifiers = rows.map((r) => r.identifier);
    expect(identifiers.includes(written), "Better Auth's own reset request is not among the rows");
    const shape = /^[A-Za-z0-9_-]{43}$/;
    const odd = identifiers.filter((i) => !shape.test(i)).length;
    expect(odd === 0, `${odd} of ${identifiers.length} identifiers are not a base64url SHA-256`);
  });
}

await check("a wrong password is refused", async () => {
  const res = await signIn(email, `${password}-wrong`);
  expect(res.status === 401, `status ${res.status}`);
});

await db.destroy();
console.log(`${checks - failures} passed, ${failures} failed`);
process.exit(failures ? 1 : 0);
