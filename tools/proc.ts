import { readdir, readFile } from 'node:fs/promises';

/** What Linux's /proc says of processes, for the tests and tools that measure the server from outside it. */

/** Resident memory of a process, MiB. */
export async function rssMiB(pid: number): Promise<number> {
  return Number(/VmRSS:\s+(\d+)/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/** The direct children of process `pid`, with their command lines. */
export async function childProcesses(pid: number): Promise<{ pid: number; cmdline: string }[]> {
  const found: { pid: number; cmdline: string }[] = [];
  for (const task of await readdir(`/proc/${pid}/task`)) {
    const children = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '');
    for (const child of children.split(/\s+/).filter(Boolean).map(Number)) {
      const cmdline = await readFile(`/proc/${child}/cmdline`, 'utf8').catch(() => null);
      if (cmdline !== null) found.push({ pid: child, cmdline: cmdline.replaceAll('\0', ' ') });
    }
  }
  return found;
}
