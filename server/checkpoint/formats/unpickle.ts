/**
 * A restricted pickle VM for PyTorch checkpoints (data.pkl), in the spirit of torch's `weights_only=True` loader.
 * Nothing from the file ever runs (JS cannot run Python); the VM only builds inert values, and the few callables
 * torch.save emits (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`, `_codecs.encode`, …) are
 * interpreted here. Any other global becomes an inert placeholder that may appear as data (Lightning's callbacks
 * dict is keyed by a class); calling or building one refuses the whole file, naming it.
 *
 * Guarded against: unknown opcodes (refused by name), lengths beyond the remaining bytes, unbounded stack or memo
 * growth, too many objects, and prototype pollution (dicts are Maps; nothing is keyed on a plain object). The VM is
 * a loop, never recursive, so deep nesting cannot overflow the JS stack; callers walking the result must also not
 * recurse without a bound (values may even be cyclic through the memo).
 */
import { CheckpointError, DTYPE_BYTES, type StoredDtype } from '../tensor-file.js';

export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyTuple
  | PySet
  | Map<PyValue, PyValue>
  | PyGlobal
  | TorchStorageRef
  | TorchTensorRef;

export class PyTuple {
  constructor(readonly items: readonly PyValue[]) {}
}

export class PySet {
  constructor(
    readonly items: PyValue[],
    readonly frozen: boolean,
  ) {}
}

/**
 * A global named by the pickle (`module.name`). `allowed` ones are the callables and classes this VM interprets;
 * the rest are inert placeholders: fine as data, refused when called or built.
 */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    readonly allowed: boolean,
  ) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/** One `data/<key>` record, from BINPERSID `('storage', torch.XStorage, key, location, numel)`. */
export class TorchStorageRef {
  constructor(
    readonly key: string,
    readonly dtype: StoredDtype,
    readonly numel: number,
    readonly location: string,
  ) {}
}

/** A tensor view of a storage, from `_rebuild_tensor_v2(storage, storage_offset, size, stride, …)`. */
export class TorchTensorRef {
  constructor(
    readonly storage: TorchStorageRef,
    /** In elements. */
    readonly storageOffset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
  ) {}
}

export const TORCH_STORAGE_DTYPES: Readonly<Record<string, StoredDtype>> = {
  FloatStorage: 'F32',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  DoubleStorage: 'F64',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

/** Globals this VM gives meaning to; everything else is a placeholder. */
const ALLOWED = new Set([
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  'torch._utils._rebuild_parameter_with_state',
  'torch._tensor._rebuild_from_type_v2',
  'torch.Tensor',
  'torch.nn.parameter.Parameter',
  'torch.Size',
  'torch.device',
  'collections.OrderedDict',
  'builtins.set',
  'builtins.frozenset',
  '_codecs.encode',
  ...Object.keys(TORCH_STORAGE_DTYPES).map((s) => `torch.${s}`),
]);

export interface UnpickleLimits {
  /** Stack plus mark-stack depth. */
  readonly maxStack: number;
  readonly maxMemo: number;
  /** Containers, strings and other allocated values. */
  readonly maxObjects: number;
  readonly maxLongBytes: number;
  readonly maxGlobalName: number;
}

export const DEFAULT_UNPICKLE_LIMITS: UnpickleLimits = {
  maxStack: 100_000,
  maxMemo: 4_000_000,
  maxObjects: 10_000_000,
  maxLongBytes: 1024,
  maxGlobalName: 1024,
};

export interface TorchPickle {
  readonly root: PyValue;
  /** Every storage the pickle referred to, by key. */
  readonly storages: ReadonlyMap<string, TorchStorageRef>;
  /** Qualified names of the placeholder globals seen (as data only, or the file would have been refused). */
  readonly placeholders: ReadonlySet<string>;
}

const OPCODE_NAMES: Record<number, string> = {
  0x28: 'MARK', 0x2e: 'STOP', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP', 0x46: 'FLOAT', 0x49: 'INT', 0x4a: 'BININT',
  0x4b: 'BININT1', 0x4c: 'LONG', 0x4d: 'BININT2', 0x4e: 'NONE', 0x50: 'PERSID', 0x51: 'BINPERSID', 0x52: 'REDUCE',
  0x53: 'STRING', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING', 0x56: 'UNICODE', 0x58: 'BINUNICODE', 0x61: 'APPEND',
  0x62: 'BUILD', 0x63: 'GLOBAL', 0x64: 'DICT', 0x7d: 'EMPTY_DICT', 0x65: 'APPENDS', 0x67: 'GET', 0x68: 'BINGET',
  0x69: 'INST', 0x6a: 'LONG_BINGET', 0x6c: 'LIST', 0x5d: 'EMPTY_LIST', 0x6f: 'OBJ', 0x70: 'PUT', 0x71: 'BINPUT',
  0x72: 'LONG_BINPUT', 0x73: 'SETITEM', 0x74: 'TUPLE', 0x29: 'EMPTY_TUPLE', 0x75: 'SETITEMS', 0x47: 'BINFLOAT',
  0x80: 'PROTO', 0x81: 'NEWOBJ', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4', 0x85: 'TUPLE1', 0x86: 'TUPLE2',
  0x87: 'TUPLE3', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x42: 'BINBYTES',
  0x43: 'SHORT_BINBYTES', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x8e: 'BINBYTES8', 0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS', 0x91: 'FROZENSET', 0x92: 'NEWOBJ_EX', 0x93: 'STACK_GLOBAL', 0x94: 'MEMOIZE', 0x95: 'FRAME',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

/** Python's type name for a value, for messages (never walks into it). */
export function pyTypeName(v: PyValue): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'list';
  if (v instanceof PyTuple) return 'tuple';
  if (v instanceof PySet) return v.frozen ? 'frozenset' : 'set';
  if (v instanceof Map) return 'dict';
  if (v instanceof PyGlobal) return v.qualifiedName;
  if (v instanceof TorchStorageRef) return 'torch storage';
  return 'torch.Tensor';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Runs `data` (the bytes of `<top>/data.pkl`) through the restricted VM. `file`/`entry` name it in errors.
 * Throws CheckpointError for anything it will not do.
 */
export function unpickleTorch(data: Uint8Array, file: string, entry = 'data.pkl', limits: UnpickleLimits = DEFAULT_UNPICKLE_LIMITS): TorchPickle {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const end = data.byteLength;
  let pos = 0;
  let stack: PyValue[] = [];
  const metastack: PyValue[][] = [];
  let depth = 0; // stack.length + all metastack lengths, kept incrementally
  const memo = new Map<number, PyValue>();
  let objects = 0;
  const storages = new Map<string, TorchStorageRef>();
  const placeholders = new Set<string>();
  let opPos = 0;

  const fail = (msg: string): never => {
    throw new CheckpointError(`${file}: ${entry}: ${msg} (at byte ${opPos})`, file);
  };
  const need = (n: number, what: string): number => {
    if (n > end - pos) fail(`${what} of ${n} bytes runs past the end of the pickle (${end - pos} left)`);
    return n;
  };
  const need64 = (n: bigint, what: string): number => {
    if (n > BigInt(end - pos)) fail(`${what} of ${n} bytes runs past the end of the pickle (${end - pos} left)`);
    return Number(n);
  };
  const u8 = (): number => {
    if (pos >= end) fail('operand runs past the end of the pickle');
    return data[pos++]!;
  };
  const u16 = (): number => {
    need(2, 'operand');
    const v = view.getUint16(pos, true);
    pos += 2;
    return v;
  };
  const u32 = (): number => {
    need(4, 'operand');
    const v = view.getUint32(pos, true);
    pos += 4;
    return v;
  };
  const u64 = (): bigint => {
    need(8, 'operand');
    const v = view.getBigUint64(pos, true);
    pos += 8;
    return v;
  };
  const take = (n: number): Uint8Array => {
    const b = data.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const counted = <T extends PyValue>(v: T): T => {
    if (++objects > limits.maxObjects) fail(`more than ${limits.maxObjects} objects`);
    return v;
  };
  const push = (v: PyValue): void => {
    if (++depth > limits.maxStack) fail(`pickle stack deeper than ${limits.maxStack}`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    if (stack.length === 0) fail('stack underflow');
    depth--;
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1]!;
  };
  const popMark = (): PyValue[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) fail('no MARK on the stack');
    stack = prev!;
    // the items leave the stack; the mark itself counted one
    depth -= items.length + 1;
    return items;
  };
  const text = (b: Uint8Array): string => {
    try {
      return utf8.decode(b);
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const memoPut = (i: number): void => {
    if (!memo.has(i) && memo.size >= limits.maxMemo) fail(`memo larger than ${limits.maxMemo} entries`);
    memo.set(i, top());
  };
  const memoGet = (i: number): void => {
    if (!memo.has(i)) fail(`memo entry ${i} read before it was written`);
    push(memo.get(i)!);
  };
  const signedLE = (b: Uint8Array): number | bigint => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[b.length - 1]! & 0x80) v -= 1n << BigInt(b.length * 8);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };
  const line = (what: string): string => {
    const limit = Math.min(end, pos + limits.maxGlobalName + 1);
    let j = pos;
    while (j < limit && data[j] !== 0x0a) j++;
    if (j >= limit) fail(`GLOBAL ${what} is not a newline-terminated name of at most ${limits.maxGlobalName} bytes`);
    const s = text(data.subarray(pos, j));
    pos = j + 1;
    return s;
  };
  const global = (module: string, name: string): PyGlobal => {
    if (!/^[A-Za-z_][A-Za-z0-9_.]*$/.test(module) || !/^[A-Za-z_][A-Za-z0-9_.]*$/.test(name)) {
      fail(`GLOBAL with a malformed name ${JSON.stringify(`${module}.${name}`)}`);
    }
    const g = new PyGlobal(module, name, ALLOWED.has(`${module}.${name}`));
    if (!g.allowed) placeholders.add(g.qualifiedName);
    return counted(g);
  };

  const asInt = (v: PyValue, what: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) fail(`${what} is not a non-negative integer (got ${pyTypeName(v)})`);
    return v as number;
  };
  const intTuple = (v: PyValue, what: string): number[] => {
    if (!(v instanceof PyTuple)) return fail(`${what} is not a tuple (got ${pyTypeName(v)})`);
    return v.items.map((x, i) => asInt(x, `${what}[${i}]`));
  };

  const persistentLoad = (pid: PyValue): PyValue => {
    if (!(pid instanceof PyTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') {
      return fail(`persistent id is not ('storage', type, key, location, numel) (got ${pyTypeName(pid)})`);
    }
    const [, type, key, location, numelV] = pid.items as [PyValue, PyValue, PyValue, PyValue, PyValue];
    if (!(type instanceof PyGlobal) || type.module !== 'torch' || !(type.name in TORCH_STORAGE_DTYPES)) {
      return fail(`storage type ${type instanceof PyGlobal ? type.qualifiedName : pyTypeName(type)} is not supported (supported: ${Object.keys(TORCH_STORAGE_DTYPES).join(', ')})`);
    }
    if (typeof key !== 'string' || !/^[A-Za-z0-9_]{1,64}$/.test(key)) return fail(`storage key ${JSON.stringify(key)} is not a plain name`);
    if (typeof location !== 'string') return fail(`storage ${key}: location is not a string`);
    const numel = asInt(numelV, `storage ${key}: numel`);
    const dtype = TORCH_STORAGE_DTYPES[type.name]!;
    if (numel * DTYPE_BYTES[dtype] > Number.MAX_SAFE_INTEGER) fail(`storage ${key}: numel ${numel} is too large`);
    const seen = storages.get(key);
    if (seen !== undefined) {
      if (seen.dtype !== dtype || seen.numel !== numel) fail(`storage ${key} is declared twice with different types or sizes`);
      return seen;
    }
    const s = new TorchStorageRef(key, dtype, numel, location);
    storages.set(key, s);
    return s;
  };

  const rebuildTensor = (args: readonly PyValue[]): TorchTensorRef => {
    if (args.length < 4 || args.length > 7) fail(`_rebuild_tensor_v2 called with ${args.length} arguments`);
    const [storage, offsetV, sizeV, strideV] = args as [PyValue, PyValue, PyValue, PyValue];
    if (!(storage instanceof TorchStorageRef)) return fail(`_rebuild_tensor_v2: first argument is ${pyTypeName(storage)}, not a storage`);
    const offset = asInt(offsetV, '_rebuild_tensor_v2: storage_offset');
    const shape = intTuple(sizeV, '_rebuild_tensor_v2: size');
    const stride = intTuple(strideV, '_rebuild_tensor_v2: stride');
    if (shape.length !== stride.length) fail(`_rebuild_tensor_v2: size has ${shape.length} dimensions but stride ${stride.length}`);
    return counted(new TorchTensorRef(storage, offset, shape, stride));
  };

  /** Applies an allowed callable; anything else refuses the file. */
  const call = (fn: PyValue, argsV: PyValue, how: string): PyValue => {
    if (!(fn instanceof PyGlobal)) return fail(`${how} applied to ${pyTypeName(fn)}, which is not a callable this loader allows`);
    if (!fn.allowed) return fail(`${how} of global ${fn.qualifiedName} refused: it is not on the allow-list of safe checkpoint globals (torch weights_only rules)`);
    if (!(argsV instanceof PyTuple)) return fail(`${how} of ${fn.qualifiedName}: arguments are ${pyTypeName(argsV)}, not a tuple`);
    const args = argsV.items;
    const q = fn.qualifiedName;
    switch (q) {
      case 'torch._utils._rebuild_tensor_v2':
        return rebuildTensor(args);
      case 'torch._utils._rebuild_parameter':
      case 'torch._utils._rebuild_parameter_with_state':
        if (!(args[0] instanceof TorchTensorRef)) return fail(`${q}: data is ${args[0] === undefined ? 'missing' : pyTypeName(args[0])}, not a tensor`);
        return args[0];
      case 'torch._tensor._rebuild_from_type_v2': {
        // (func, new_type, args, state): func must itself be allowed; the type is Tensor/Parameter; state dropped.
        const [inner, type, innerArgs] = args as [PyValue, PyValue, PyValue];
        if (!(type instanceof PyGlobal) || (type.qualifiedName !== 'torch.Tensor' && type.qualifiedName !== 'torch.nn.parameter.Parameter')) {
          return fail(`${q}: tensor type ${type instanceof PyGlobal ? type.qualifiedName : pyTypeName(type)} is not allowed`);
        }
        return call(inner, innerArgs, `${how} (via ${q})`);
      }
      case 'collections.OrderedDict':
        if (args.length === 0) return counted(new Map());
        return fail(`${q} called with arguments`);
      case 'builtins.set':
      case 'builtins.frozenset': {
        if (args.length === 0) return counted(new PySet([], q === 'builtins.frozenset'));
        const a = args[0]!;
        if (args.length === 1 && (Array.isArray(a) || a instanceof PyTuple)) {
          return counted(new PySet([...(Array.isArray(a) ? a : a.items)], q === 'builtins.frozenset'));
        }
        return fail(`${q} called with ${pyTypeName(a)}`);
      }
      case 'torch.Size':
        if (args.length === 1 && args[0] instanceof PyTuple) return args[0];
        if (args.length === 0) return counted(new PyTuple([]));
        return fail(`${q} called with unexpected arguments`);
      case 'torch.device':
        if (args.length >= 1 && args.length <= 2 && typeof args[0] === 'string') return args.length === 2 ? `${args[0]}:${String(args[1])}` : args[0];
        return fail(`${q} called with unexpected arguments`);
      case '_codecs.encode': {
        // protocol 2 spells bytes as _codecs.encode(str, 'latin1')
        const [s, enc] = args as [PyValue, PyValue];
        if (typeof s !== 'string') return fail(`${q}: first argument is ${pyTypeName(s)}`);
        if (enc === 'latin1' || enc === 'latin-1' || enc === 'iso-8859-1') {
          const out = new Uint8Array(s.length);
          for (let i = 0; i < s.length; i++) {
            const c = s.charCodeAt(i);
            if (c > 0xff) return fail(`${q}: character outside latin1`);
            out[i] = c;
          }
          return counted(out);
        }
        if (enc === 'utf-8' || enc === 'utf8' || enc === undefined) return counted(new Uint8Array(Buffer.from(s, 'utf8')));
        return fail(`${q}: encoding ${JSON.stringify(enc)} is not supported`);
      }
      default:
        return fail(`${how} of ${q} is not supported`);
    }
  };

  const build = (target: PyValue, _state: PyValue): void => {
    // torch allows BUILD on Tensor/Parameter/OrderedDict (state_dict's `_metadata` arrives this way): attributes only,
    // which nothing here needs, so the state is dropped.
    if (target instanceof Map || target instanceof TorchTensorRef) return;
    if (target instanceof PyGlobal) fail(`BUILD of global ${target.qualifiedName} refused: building objects is not allowed`);
    fail(`BUILD on ${pyTypeName(target)} refused`);
  };

  const setItems = (dict: PyValue, items: PyValue[]): void => {
    if (!(dict instanceof Map)) return fail(`SETITEM(S) on ${pyTypeName(dict)}, not a dict`);
    if (items.length % 2 !== 0) fail('SETITEMS with an odd number of items');
    for (let i = 0; i < items.length; i += 2) dict.set(items[i]!, items[i + 1]!);
  };
  const appendItems = (list: PyValue, items: PyValue[]): void => {
    if (!Array.isArray(list)) return fail(`APPEND(S) on ${pyTypeName(list)}, not a list`);
    for (const x of items) list.push(x);
  };

  for (;;) {
    if (pos >= end) fail('pickle ends without STOP (truncated?)');
    opPos = pos;
    const op = data[pos++]!;
    switch (op) {
      case 0x80: {
        const v = u8();
        if (v < 2 || v > 5) fail(`pickle protocol ${v} is not supported (2-5)`);
        break;
      }
      case 0x95: // FRAME: a length hint only
        u64();
        break;
      case 0x2e: {
        // STOP
        if (stack.length === 0) fail('STOP with an empty stack');
        return { root: stack[stack.length - 1]!, storages, placeholders };
      }
      case 0x28: // MARK
        if (++depth > limits.maxStack) fail(`pickle stack deeper than ${limits.maxStack}`);
        metastack.push(stack);
        stack = [];
        break;
      case 0x30: // POP
        if (stack.length === 0 && metastack.length > 0) popMark();
        else pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x71:
        memoPut(u8());
        break;
      case 0x72:
        memoPut(u32());
        break;
      case 0x94:
        memoPut(memo.size);
        break;
      case 0x68:
        memoGet(u8());
        break;
      case 0x6a:
        memoGet(u32());
        break;
      case 0x4a:
        need(4, 'operand');
        push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x4b:
        push(u8());
        break;
      case 0x4d:
        push(u16());
        break;
      case 0x8a: {
        const n = need(u8(), 'LONG1');
        push(signedLE(take(n)));
        break;
      }
      case 0x8b: {
        const n = u32();
        if (n > limits.maxLongBytes) fail(`LONG4 of ${n} bytes is over the ${limits.maxLongBytes}-byte limit`);
        need(n, 'LONG4');
        push(signedLE(take(n)));
        break;
      }
      case 0x58:
        push(counted(text(take(need(u32(), 'BINUNICODE')))));
        break;
      case 0x8c:
        push(counted(text(take(need(u8(), 'SHORT_BINUNICODE')))));
        break;
      case 0x8d:
        push(counted(text(take(need64(u64(), 'BINUNICODE8')))));
        break;
      case 0x42:
        push(counted(take(need(u32(), 'BINBYTES')).slice()));
        break;
      case 0x43:
        push(counted(take(need(u8(), 'SHORT_BINBYTES')).slice()));
        break;
      case 0x8e:
        push(counted(take(need64(u64(), 'BINBYTES8')).slice()));
        break;
      case 0x47:
        need(8, 'operand');
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x88:
        push(true);
        break;
      case 0x89:
        push(false);
        break;
      case 0x4e:
        push(null);
        break;
      case 0x29:
        push(counted(new PyTuple([])));
        break;
      case 0x74:
        push(counted(new PyTuple(popMark())));
        break;
      case 0x85: {
        const a = pop();
        push(counted(new PyTuple([a])));
        break;
      }
      case 0x86: {
        const b = pop();
        const a = pop();
        push(counted(new PyTuple([a, b])));
        break;
      }
      case 0x87: {
        const c = pop();
        const b = pop();
        const a = pop();
        push(counted(new PyTuple([a, b, c])));
        break;
      }
      case 0x7d:
        push(counted(new Map()));
        break;
      case 0x64: {
        const d = counted(new Map<PyValue, PyValue>());
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x5d:
        push(counted([]));
        break;
      case 0x6c:
        push(counted(popMark()));
        break;
      case 0x73: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case 0x61: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case 0x65: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case 0x8f:
        push(counted(new PySet([], false)));
        break;
      case 0x90: {
        const items = popMark();
        const s = top();
        if (!(s instanceof PySet) || s.frozen) fail(`ADDITEMS on ${pyTypeName(s)}, not a set`);
        for (const x of items) (s as PySet).items.push(x);
        break;
      }
      case 0x91:
        push(counted(new PySet(popMark(), true)));
        break;
      case 0x63: {
        const module = line('module');
        const name = line('name');
        push(global(module, name));
        break;
      }
      case 0x93: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL with non-string names');
        push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        const args = pop();
        const fn = pop();
        push(call(fn, args, 'REDUCE'));
        break;
      }
      case 0x81: {
        const args = pop();
        const cls = pop();
        if (cls instanceof PyGlobal && !cls.allowed) fail(`NEWOBJ of global ${cls.qualifiedName} refused: it is not on the allow-list of safe checkpoint globals (torch weights_only rules)`);
        if (cls instanceof PyGlobal && (cls.qualifiedName === 'collections.OrderedDict' || cls.qualifiedName === 'builtins.set')) {
          push(call(cls, args, 'NEWOBJ'));
          break;
        }
        fail(`NEWOBJ of ${cls instanceof PyGlobal ? cls.qualifiedName : pyTypeName(cls)} refused`);
        break;
      }
      case 0x62: {
        const state = pop();
        build(top(), state);
        break;
      }
      case 0x51:
        push(persistentLoad(pop()));
        break;
      default: {
        const name = OPCODE_NAMES[op];
        fail(`pickle opcode ${name ?? 'unknown'} (0x${op.toString(16).padStart(2, '0')}) is not supported by this restricted loader`);
      }
    }
  }
}
