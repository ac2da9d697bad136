import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { formatIssue } from '../nodes/graph-format.js';
import type { SamplerName, SigmaSchedule } from '../nodes/index.js';
import { NODE_DEFS, SAMPLER_NAMES, SIGMA_SCHEDULES } from '../nodes/index.js';
import { NODES_API_VERSION } from '../nodes/protocol.js';
import type { ParsedArgs } from './cli/args.js';
import { checkFlags, flag, numberFlag, parseArgs } from './cli/args.js';
import { CHECKPOINT_SWITCHES, CHECKPOINT_USAGE, cmdCache, cmdConvert, cmdInspect } from './cli/checkpoint-commands.js';
import { applyOverrides, loadGraphFile } from './cli/load-graph.js';
import { modelChanges } from './cli/model-changes.js';
import { progressPrinter } from './cli/progress.js';
import { GraphValidationError, NodeExecutionError } from './engine/errors.js';
import { executeGraph } from './execution/executor.js';
import { resolveMaxRunMemory } from './execution/run-memory-budget.js';
import { prepareRun, type Admission } from './engine/prepare.js';
import { preflightGraph } from './execution/preflight.js';
import { SESSION_ISOLATIONS, type SessionIsolation } from './runtime/session-channel.js';
import { ActivationStore } from './sd/activation-store.js';
import { CheckpointCache, DEFAULT_CHECKPOINT_CACHE_BYTES, checkpointCacheDir } from './sd/checkpoint-cache.js';
import { ModelManager } from './sd/model-manager.js';
import type { RecordedModel } from './sd/png-meta.js';
import { parseSchedulerConfig, scheduleReport } from './sd/scheduler.js';
import { createSampler } from './sd/schedulers/index.js';
import { ClipTokenizer } from './sd/tokenizer.js';

/** Each command's usage lines, printed by `fusegraph --help` (all) and `fusegraph COMMAND --help` (one). */
const COMMAND_USAGE: Record<string, string> = {
  run: `  run GRAPH.json|GRAPH.png [--models DIR] [--input DIR] [--out DIR] [--set NODE.PARAM=VALUE ...]
      [--max-run-memory BYTES] [--data DIR] [--max-checkpoint-cache BYTES] [--session-isolation process|thread]
      validate and run a graph; prints the files it wrote. Like serve, refuses up front a graph whose estimated
      peak memory exceeds --max-run-memory (default half the free RAM, or of the GPU's when the models run on one),
      using the UNet activations serve or a worker measured into --data (default .fusegraph), if any
`,
  validate: `  validate GRAPH.json|GRAPH.png [--set NODE.PARAM=VALUE ...] [--models DIR] [--max-run-memory BYTES] [--data DIR]
      check a graph and print every problem: the same checks as run's and serve's before anything runs (the
      graph, then the model folders under --models, image sizes, steps and the memory budget, as run's defaults)
`,
  nodes: `  nodes                        print all node definitions as JSON (what GET /api/nodes serves)
`,
  tokenize: `  tokenize TOKENIZER_DIR TEXT  print the padded CLIP token ids as a JSON array
`,
  schedule: `  schedule SCHEDULER_CONFIG.json --steps N [--sampler NAME] [--schedule default|karras|exponential]
      print the timesteps and sigmas a sampler uses, one per model call, as JSON (without --sampler and
      --schedule: DDIM's timesteps and alphas_cumprod, torch's float32 values)
`,
  serve: `  serve [--port 8188] [--host 127.0.0.1] [--token T] [--models DIR] [--input DIR] [--out DIR]
        [--concurrency N] [--max-model-memory BYTES] [--max-run-memory BYTES] [--max-cache-memory BYTES] [--max-checkpoint-cache BYTES]
        [--max-queued-per-client N] [--keep-runs N] [--keep-days D] [--unload-idle SECONDS] [--data DIR]
        [--threads N] [--session-isolation process|thread] [--test-hooks]
        [--redis redis://HOST:PORT[/DB] [--redis-ca CA.pem] [--local-worker]]
      start the editor and API server (--test-hooks: test-only step gate under /api/test, see docs/api.md);
      with --redis, runs execute on workers (docs/scale-out.md); rediss:// is TLS, --redis-ca a private CA to
      trust for it (or NODE_EXTRA_CA_CERTS); the queues' dashboard is at /admin/queues
`,
  worker: `  worker --redis URL [--redis-ca CA.pem] [--models DIR] [--input DIR] [--out DIR] [--provider auto|cpu|webgpu|cuda]
         [--concurrency N] [--name NAME] [--threads N] [--max-model-memory BYTES] [--lock-ms MS]
         [--resident-grace-ms MS] [--unload-idle SECONDS] [--max-run-memory BYTES] [--max-checkpoint-cache BYTES] [--data DIR]
         [--session-isolation process|thread] [--test-hooks]
      execute runs for the API nodes on that Redis (listens on no port; docs/scale-out.md); a run whose models
      another worker has loaded is left to it for up to --resident-grace-ms (default 2000, 0: no preference)
`,
  ...CHECKPOINT_USAGE,
};

const USAGE = `usage: fusegraph <command> [options]    (fusegraph COMMAND --help for one command)

commands:
${Object.values(COMMAND_USAGE).join('')}`;

/** `--help` or `-h` anywhere asks for usage instead of running the command (so `serve -h` starts no server). */
function wantsHelp(argv: readonly string[]): boolean {
  return argv.some((a) => a === '--help' || a === '-h');
}

type Io = { out: NodeJS.WriteStream; err: NodeJS.WriteStream };

async function readGraphArg(args: ParsedArgs): Promise<{ graph: unknown; recorded: RecordedModel[] }> {
  const file = args.positionals[1];
  if (!file) throw new Error('missing GRAPH argument');
  const { graph, recorded } = await loadGraphFile(file);
  return { graph: applyOverrides(graph, args.flags.get('set') ?? []), recorded };
}

/**
 * The same admission as serve's, before any model loads: the budget (serve's flag and default) and the UNet
 * activations measured into the data folder by serve or a worker, read only (a one-off run measures nothing).
 */
function admissionOf(args: ParsedArgs, io: Io): { modelsRoot: string; admit: Admission } {
  const maxRunMemory = resolveMaxRunMemory(numberFlag(args, 'max-run-memory'), { provider: 'auto', log: (m) => io.err.write(`${m}\n`) });
  const activations = new ActivationStore(path.resolve(flag(args, 'data') ?? '.fusegraph'));
  const modelsRoot = flag(args, 'models') ?? 'models';
  return { modelsRoot, admit: (plan) => preflightGraph(plan, { roots: { models: path.resolve(modelsRoot) }, maxRunMemory, activations }) };
}

async function cmdValidate(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, ['set', 'models', 'max-run-memory', 'data']);
  const { admit } = admissionOf(args, io);
  const result = await prepareRun((await readGraphArg(args)).graph, admit);
  if (result.ok) {
    io.out.write(`ok: ${Object.keys(result.plan.submitted.nodes).length} nodes\n`);
    return 0;
  }
  io.err.write(`${result.issues.length} problem${result.issues.length > 1 ? 's' : ''}:\n`);
  for (const i of result.issues) io.err.write(`  - ${formatIssue(i)}\n`);
  return 1;
}

async function cmdRun(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, ['set', 'models', 'input', 'out', 'max-run-memory', 'data', 'session-isolation', 'max-checkpoint-cache']);
  const { modelsRoot, admit } = admissionOf(args, io);
  const isolation = isolationFlag(args);
  const { graph, recorded } = await readGraphArg(args);
  // Validated, planned and admitted before any model loads (every issue at once); the executor takes the plan.
  const prepared = await prepareRun(graph, admit);
  if (!prepared.ok) throw new GraphValidationError(prepared.issues);
  const checkpoints = new CheckpointCache({
    dir: checkpointCacheDir(path.resolve(flag(args, 'data') ?? '.fusegraph')),
    maxBytes: numberFlag(args, 'max-checkpoint-cache') ?? DEFAULT_CHECKPOINT_CACHE_BYTES,
    log: (m) => io.err.write(`${m}\n`),
  });
  const models = new ModelManager({ checkpoints, ...(isolation ? { isolation } : {}) });
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  try {
    const result = await executeGraph(prepared.plan, {
      roots: { models: modelsRoot, input: flag(args, 'input') ?? 'input', output: flag(args, 'out') ?? 'output' },
      models,
      signal: controller.signal,
      onEvent: progressPrinter(io.err),
    });
    for (const m of result.models) {
      const skipped = m.fallbacks.map((f) => `${f.provider} unavailable: ${f.error.split('\n')[0]}`).join('; ');
      io.err.write(`model ${m.folder} on ${m.provider}${skipped ? ` (${skipped})` : ''}: ${result.unetCalls[m.key] ?? 0} UNet calls\n`);
    }
    for (const line of await modelChanges(recorded, result, models, modelsRoot)) io.err.write(`warning: ${line}\n`);
    io.err.write(`done in ${(result.ms / 1000).toFixed(2)} s\n`);
    for (const o of result.outputs) {
      const rel = path.relative(process.cwd(), o.path);
      io.out.write(`${rel.startsWith('..') ? o.path : rel}\n`);
    }
    return 0;
  } finally {
    process.off('SIGINT', onSigint);
    await models.dispose();
  }
}

async function cmdTokenize(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, []);
  const [, dir, text] = args.positionals;
  if (!dir || text === undefined) throw new Error('usage: fusegraph tokenize TOKENIZER_DIR "TEXT"');
  const tok = await ClipTokenizer.fromFolder(dir);
  io.out.write(`${JSON.stringify(tok.encodePadded(text))}\n`);
  return 0;
}

async function cmdSchedule(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, ['steps', 'sampler', 'schedule']);
  const file = args.positionals[1];
  const steps = Number(flag(args, 'steps') ?? NaN);
  if (!file || !Number.isInteger(steps)) throw new Error(`usage: fusegraph ${COMMAND_USAGE.schedule!.trim()}`);
  const json = JSON.parse(await readFile(file, 'utf8')) as unknown;
  const sampler = flag(args, 'sampler');
  const schedule = flag(args, 'schedule') ?? 'default';
  if (sampler === undefined && schedule === 'default') {
    io.out.write(`${JSON.stringify(scheduleReport(parseSchedulerConfig(json), steps))}\n`);
    return 0;
  }
  if (!(SAMPLER_NAMES as readonly string[]).includes(sampler ?? 'ddim')) throw new Error(`--sampler must be one of ${SAMPLER_NAMES.join(', ')}`);
  if (!(SIGMA_SCHEDULES as readonly string[]).includes(schedule)) throw new Error(`--schedule must be one of ${SIGMA_SCHEDULES.join(', ')}`);
  const run = createSampler(json, { sampler: (sampler ?? 'ddim') as SamplerName, schedule: schedule as SigmaSchedule, steps });
  io.out.write(
    `${JSON.stringify({
      sampler: sampler ?? 'ddim',
      schedule,
      model_calls: run.timesteps.length,
      init_noise_sigma: run.initNoiseSigma,
      timesteps: Array.from(run.timesteps),
      sigmas: Array.from(run.sigmas),
    })}\n`,
  );
  return 0;
}

async function cmdServe(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, ['port', 'host', 'token', 'models', 'input', 'out', 'concurrency', 'max-model-memory', 'max-run-memory', 'max-cache-memory', 'max-checkpoint-cache', 'max-queued-per-client', 'keep-runs', 'keep-days', 'data', 'threads', 'session-isolation', 'test-hooks', 'redis', 'redis-ca', 'local-worker', 'unload-idle']);
  const { startServer } = await import('./http/start.js');
  const num = (name: string): number | undefined => numberFlag(args, name);
  const server = await startServer({
    host: flag(args, 'host') ?? '127.0.0.1',
    port: num('port') ?? 8188,
    token: flag(args, 'token') ?? process.env.FUSEGRAPH_TOKEN,
    modelsRoot: path.resolve(flag(args, 'models') ?? 'models'),
    inputRoot: path.resolve(flag(args, 'input') ?? 'input'),
    outputRoot: path.resolve(flag(args, 'out') ?? 'output'),
    dataDir: path.resolve(flag(args, 'data') ?? '.fusegraph'),
    concurrency: num('concurrency') ?? 1,
    maxModelMemory: num('max-model-memory'),
    maxRunMemory: num('max-run-memory'),
    maxCacheMemory: num('max-cache-memory'),
    maxCheckpointCache: num('max-checkpoint-cache'),
    maxQueuedPerClient: num('max-queued-per-client'),
    keepRuns: num('keep-runs'),
    keepDays: num('keep-days'),
    ...(flag(args, 'unload-idle') !== undefined ? { unloadIdleMs: num('unload-idle')! * 1000 } : {}),
    ...(args.flags.has('test-hooks') ? { testHooks: true } : {}),
    redis: flag(args, 'redis') ?? process.env.FUSEGRAPH_REDIS,
    redisCa: flag(args, 'redis-ca'),
    localWorker: args.flags.has('local-worker'),
    threads: num('threads'),
    sessionIsolation: isolationFlag(args),
  });
  io.err.write(`FuseGraph editor and API on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = (): void => {
      void server.close().then(resolve);
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}

const PROVIDERS = ['auto', 'cpu', 'webgpu', 'cuda'] as const;

/** `--session-isolation process|thread` (server/runtime/session-channel.ts); undefined: the default, process. */
function isolationFlag(args: ParsedArgs): SessionIsolation | undefined {
  const v = flag(args, 'session-isolation');
  if (v !== undefined && !(SESSION_ISOLATIONS as readonly string[]).includes(v)) {
    throw new Error(`--session-isolation must be one of ${SESSION_ISOLATIONS.join(', ')}`);
  }
  return v as SessionIsolation | undefined;
}

async function cmdWorker(args: ParsedArgs, io: Io): Promise<number> {
  checkFlags(args, ['redis', 'models', 'input', 'out', 'provider', 'concurrency', 'name', 'threads', 'max-model-memory', 'lock-ms', 'resident-grace-ms', 'test-hooks', 'redis-ca', 'unload-idle', 'max-run-memory', 'max-checkpoint-cache', 'data', 'session-isolation']);
  const { FuseGraphWorker } = await import('./services/distributed/worker.js');
  const redis = flag(args, 'redis') ?? process.env.FUSEGRAPH_REDIS;
  if (!redis) throw new Error('a worker needs --redis redis://HOST:PORT (the API node\'s Redis)');
  const provider = flag(args, 'provider') ?? 'auto';
  if (!(PROVIDERS as readonly string[]).includes(provider)) throw new Error(`--provider must be one of ${PROVIDERS.join(', ')}`);
  const int = (name: string): number | undefined => numberFlag(args, name, 'positive integer');
  const name = flag(args, 'name');
  const out = flag(args, 'out');
  const caFile = flag(args, 'redis-ca');
  const grace = numberFlag(args, 'resident-grace-ms');
  const unloadIdle = numberFlag(args, 'unload-idle');
  const worker = await FuseGraphWorker.start({
    redisUrl: redis,
    modelsRoot: path.resolve(flag(args, 'models') ?? 'models'),
    inputRoot: path.resolve(flag(args, 'input') ?? 'input'),
    provider: provider as (typeof PROVIDERS)[number],
    concurrency: int('concurrency') ?? 1,
    threads: int('threads'),
    sessionIsolation: isolationFlag(args),
    maxModelMemory: int('max-model-memory'),
    lockMs: int('lock-ms'),
    testHooks: args.flags.has('test-hooks') || process.env.FUSEGRAPH_TEST_HOOKS === '1',
    ...(name !== undefined ? { name } : {}),
    ...(out !== undefined ? { outputRoot: out } : {}),
    ...(caFile !== undefined ? { redisCa: caFile } : {}),
    ...(grace !== undefined ? { residentGraceMs: grace } : {}),
    ...(unloadIdle !== undefined ? { unloadIdleMs: unloadIdle * 1000 } : {}),
    maxRunMemory: numberFlag(args, 'max-run-memory'),
    maxCheckpointCache: numberFlag(args, 'max-checkpoint-cache'),
    dataDir: path.resolve(flag(args, 'data') ?? '.fusegraph'),
  });
  if (worker.testHooks) io.err.write('TEST HOOKS ON: sampler steps pass a step gate the API node\'s /api/test routes drive; never use this worker for real work\n');
  io.err.write(`FuseGraph worker "${worker.name}" on Redis ${new URL(redis).host}, serving ${worker.modelPaths().length} model folder(s): ${worker.modelPaths().join(', ')}\n`);
  await new Promise<void>((resolve) => {
    // The first signal lets running runs finish; a second abandons them (BullMQ retries them on another worker).
    let signals = 0;
    const stop = (): void => {
      signals++;
      if (signals > 1) process.exit(1);
      io.err.write('finishing the running runs; signal again to leave them to other workers\n');
      void worker.close().then(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  return 0;
}

export async function main(argv: readonly string[], io: Io = { out: process.stdout, err: process.stderr }): Promise<number> {
  const command = argv[0];
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    io.out.write(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command in COMMAND_USAGE && wantsHelp(argv.slice(1))) {
    io.out.write(`usage: fusegraph ${COMMAND_USAGE[command]!.trimStart()}`);
    return 0;
  }
  try {
    const args = parseArgs(argv, ['test-hooks', 'local-worker', ...CHECKPOINT_SWITCHES]);
    switch (command) {
      case 'run':
        return await cmdRun(args, io);
      case 'validate':
        return await cmdValidate(args, io);
      case 'nodes':
        io.out.write(`${JSON.stringify({ version: NODES_API_VERSION, nodes: NODE_DEFS }, null, 2)}\n`);
        return 0;
      case 'tokenize':
        return await cmdTokenize(args, io);
      case 'schedule':
        return await cmdSchedule(args, io);
      case 'serve':
        return await cmdServe(args, io);
      case 'worker':
        return await cmdWorker(args, io);
      case 'inspect':
        return await cmdInspect(args, io);
      case 'convert':
        return await cmdConvert(args, io);
      case 'cache':
        return await cmdCache(args, io);
      default:
        io.err.write(`unknown command "${command}"\n${USAGE}`);
        return 2;
    }
  } catch (err) {
    if (err instanceof GraphValidationError) {
      io.err.write(`error: ${err.issues.length} problem${err.issues.length > 1 ? 's' : ''} in the graph:\n`);
      for (const i of err.issues) io.err.write(`  - ${formatIssue(i)}\n`);
    } else if (err instanceof NodeExecutionError) {
      io.err.write(`\nerror: ${err.message}\n`);
    } else {
      io.err.write(`\nerror: ${(err as Error).message}\n`);
    }
    return 1;
  }
}
