/** A tiny argv parser: positionals, `--flag value`, `--flag=value`, repeatable flags, boolean switches. */
export interface ParsedArgs {
  readonly positionals: string[];
  readonly flags: Map<string, string[]>;
  /** Flags given last without a value: checkFlags says so once it knows whether the command takes them. */
  readonly missingValue?: ReadonlySet<string>;
}

export function parseArgs(argv: readonly string[], booleans: readonly string[] = []): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string[]>();
  const missingValue = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      positionals.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(2, eq) : a.slice(2);
    let value: string;
    if (eq > 0) value = a.slice(eq + 1);
    else if (booleans.includes(name)) value = 'true';
    else {
      const next = argv[i + 1];
      if (next === undefined) {
        missingValue.add(name);
        value = '';
      } else {
        value = next;
        i++;
      }
    }
    flags.set(name, [...(flags.get(name) ?? []), value]);
  }
  return { positionals, flags, missingValue };
}

export function flag(args: ParsedArgs, name: string): string | undefined {
  return args.flags.get(name)?.at(-1);
}

/** Refuses flags the command does not take, naming them and the ones it does take; then known flags left without a value. */
export function checkFlags(args: ParsedArgs, allowed: readonly string[]): void {
  const unknown = [...args.flags.keys()].filter((f) => !allowed.includes(f));
  if (unknown.length) {
    const known = allowed.length ? `; it takes ${allowed.map((f) => `--${f}`).join(', ')}` : '; it takes no options';
    throw new Error(`unknown option${unknown.length > 1 ? 's' : ''}: ${unknown.map((f) => `--${f}`).join(', ')}${known}`);
  }
  const bare = [...(args.missingValue ?? [])].filter((f) => allowed.includes(f));
  if (bare.length) throw new Error(`--${bare[0]} needs a value`);
}

/** What a numeric flag accepts. */
export type NumberRule = 'non-negative number' | 'positive integer';

const NUMBER_RULES: Readonly<Record<NumberRule, (n: number) => boolean>> = {
  'non-negative number': (n) => Number.isFinite(n) && n >= 0,
  'positive integer': (n) => Number.isInteger(n) && n >= 1,
};

/** A numeric flag's value, or undefined when it is absent; a value outside `rule` names the flag in the error. */
export function numberFlag(args: ParsedArgs, name: string, rule: NumberRule = 'non-negative number'): number | undefined {
  const v = flag(args, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!NUMBER_RULES[rule](n)) throw new Error(`--${name} must be a ${rule}`);
  return n;
}
