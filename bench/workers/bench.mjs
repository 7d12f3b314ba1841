// graphile-worker and pg-boss measured the way `bench/src/workers.rs` measures the Rust worker
// runtime, on the same database. Run by `cargo run -p bench` as
//   node bench.mjs <graphile|pgboss> <latency|throughput>
// with DATABASE_URL, SAMPLES (latency), EVENTS (throughput) and CONCURRENCY set; prints one JSON
// line of figures.
//
// Each is configured for throughput as its documentation says:
// - graphile-worker 0.18 (https://worker.graphile.org/docs/performance): concurrentJobs = the
//   concurrency, maxPoolSize = max(10, concurrency + 2), localQueue.size 500,
//   completeJobBatchDelay 0 and failJobBatchDelay 0 (batched completions); LISTEN/NOTIFY wake-up.
// - pg-boss 12 (docs/api/workers.md): localConcurrency = the concurrency, batchSize 50 with
//   burstWhenBatchFull (fetch again at once while batches come back full), useListenNotify on
//   the instance and notify on the queue (wake-up without waiting for a poll), polling 0.5 s.
import { Logger, makeWorkerUtils, run } from "graphile-worker";
import { PgBoss } from "pg-boss";

const [system, mode] = process.argv.slice(2);
const connectionString = process.env.DATABASE_URL;
const samples = Number(process.env.SAMPLES ?? 100);
const events = Number(process.env.EVENTS ?? 10000);
const concurrency = Number(process.env.CONCURRENCY ?? 8);
const CHUNK = 1000;

const now = () => process.hrtime.bigint();
const ms = (from, to) => Number(to - from) / 1e6;
const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.round((s.length - 1) * q)];
};
const sleep = (millis) => new Promise((resolve) => setTimeout(resolve, millis));

// A handler that resolves the waiter of its job, by sequence number, with the time it started.
function starts() {
  const waiting = new Map();
  let handled = 0;
  let allDone = null;
  let target = Infinity;
  return {
    started(n) {
      const at = now();
      waiting.get(n)?.(at);
      waiting.delete(n);
      handled += 1;
      if (handled >= target) allDone?.(at);
    },
    next(n) {
      return new Promise((resolve) => waiting.set(n, resolve));
    },
    all(count) {
      target = count;
      return new Promise((resolve) => {
        allDone = resolve;
        if (handled >= target) resolve(now());
      });
    },
  };
}

const quiet = new Logger(() => () => {});

const graphile = {
  preset: {
    worker: {
      connectionString,
      concurrentJobs: concurrency,
      maxPoolSize: Math.max(10, concurrency + 2),
      pollInterval: 2000,
      localQueue: { size: 500 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
    },
  },
  async start(handle) {
    return run({
      noHandleSignals: true,
      // Its default logger prints a line per job; a service would not pay that either.
      logger: quiet,
      preset: graphile.preset,
      taskList: { noop: async (payload) => handle(payload.n) },
    });
  },
  async utils() {
    return makeWorkerUtils({ connectionString, logger: quiet });
  },
  async latency() {
    const s = starts();
    const runner = await graphile.start((n) => s.started(n));
    const utils = await graphile.utils();
    await sleep(200);
    const figures = [];
    for (let n = 0; n < samples; n++) {
      const started = s.next(n);
      const sent = now();
      await utils.addJob("noop", { n });
      figures.push(ms(sent, await started));
      await sleep(20);
    }
    await utils.release();
    await runner.stop();
    return figures;
  },
  async throughput() {
    const utils = await graphile.utils();
    for (let from = 0; from < events; from += CHUNK) {
      const specs = [];
      for (let n = from; n < Math.min(events, from + CHUNK); n++) {
        specs.push({ identifier: "noop", payload: { n } });
      }
      await utils.addJobs(specs);
    }
    await utils.release();
    const s = starts();
    const done = s.all(events);
    const began = now();
    const runner = await graphile.start((n) => s.started(n));
    const finished = await done;
    await runner.stop();
    return ms(began, finished);
  },
};

const pgboss = {
  queue: `noop_${process.pid}`,
  async boss() {
    const boss = new PgBoss({
      connectionString,
      max: concurrency + 2,
      useListenNotify: true,
      supervise: false,
      schedule: false,
    });
    boss.on("error", (err) => console.error(err));
    await boss.start();
    await boss.createQueue(pgboss.queue, { notify: true });
    return boss;
  },
  work(boss, handle, batchSize) {
    return boss.work(
      pgboss.queue,
      {
        localConcurrency: concurrency,
        batchSize,
        burstWhenBatchFull: batchSize > 1,
        pollingIntervalSeconds: 0.5,
      },
      async (jobs) => {
        for (const job of jobs) handle(job.data.n);
      },
    );
  },
  async latency() {
    const boss = await pgboss.boss();
    const s = starts();
    await pgboss.work(boss, (n) => s.started(n), 50);
    await sleep(200);
    const figures = [];
    for (let n = 0; n < samples; n++) {
      const started = s.next(n);
      const sent = now();
      await boss.send(pgboss.queue, { n });
      figures.push(ms(sent, await started));
      await sleep(20);
    }
    await boss.stop({ graceful: false, close: true });
    return figures;
  },
  async throughput() {
    const boss = await pgboss.boss();
    for (let from = 0; from < events; from += CHUNK) {
      const jobs = [];
      for (let n = from; n < Math.min(events, from + CHUNK); n++) jobs.push({ data: { n } });
      await boss.insert(pgboss.queue, jobs);
    }
    const s = starts();
    const done = s.all(events);
    const began = now();
    await pgboss.work(boss, (n) => s.started(n), 50);
    const finished = await done;
    await boss.stop({ graceful: false, close: true });
    await boss.deleteQueue?.(pgboss.queue).catch(() => {});
    return ms(began, finished);
  },
};

const systems = { graphile, pgboss };
if (!systems[system] || !["latency", "throughput"].includes(mode)) {
  console.error("usage: node bench.mjs <graphile|pgboss> <latency|throughput>");
  process.exit(2);
}
// Their own loggers would print to our JSON stream.
for (const level of ["log", "info", "debug"]) {
  console[level] = (...args) => process.stderr.write(args.join(" ") + "\n");
}
if (mode === "latency") {
  const figures = await systems[system].latency();
  process.stdout.write(
    JSON.stringify({ p50_ms: quantile(figures, 0.5), p99_ms: quantile(figures, 0.99), samples: figures.length }) + "\n",
  );
} else {
  const took = await systems[system].throughput();
  process.stdout.write(JSON.stringify({ events, ms: took, events_per_s: (events * 1000) / took }) + "\n");
}
process.exit(0);
