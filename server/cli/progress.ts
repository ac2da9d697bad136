import type { ExecutionEvent } from '../engine/events.js';

/** σ-based samplers' timesteps are fractional; two decimals say enough. */
function formatT(t: number): string {
  return Number.isInteger(t) ? String(t) : t.toFixed(2);
}

/** Draws one progress bar per sampling node (any node that reports progress) on a TTY, plain lines otherwise (logs, CI). */
export function progressPrinter(stream: NodeJS.WriteStream): (e: ExecutionEvent) => void {
  const tty = stream.isTTY === true;
  const lastDecile = new Map<string, number>();
  let barOpen = false;
  const endBar = (): void => {
    if (barOpen) stream.write('\n');
    barOpen = false;
  };
  return (e) => {
    switch (e.type) {
      case 'node_started':
        endBar();
        // A node that starts (again) draws its progress from its first step; any node that reports progress is a sampler.
        lastDecile.delete(e.node);
        stream.write(`▶ ${e.node} (${e.nodeType})\n`);
        break;
      case 'node_cached':
        endBar();
        stream.write(`= ${e.node} (${e.nodeType}) cached\n`);
        break;
      case 'warning':
        endBar();
        stream.write(`warning: node "${e.node}": ${e.message}\n`);
        break;
      case 'progress': {
        if (tty) {
          const width = 30;
          const filled = Math.round((e.step / e.steps) * width);
          stream.write(`\r  ${e.node} [${'█'.repeat(filled)}${' '.repeat(width - filled)}] ${e.step}/${e.steps} t=${formatT(e.t)}   `);
          barOpen = true;
        } else {
          const decile = Math.floor((e.step / e.steps) * 10);
          if (decile !== lastDecile.get(e.node) || e.step === e.steps) {
            lastDecile.set(e.node, decile);
            stream.write(`  ${e.node} step ${e.step}/${e.steps} t=${formatT(e.t)}\n`);
          }
        }
        break;
      }
      case 'node_done':
        endBar();
        if (e.ms >= 50) stream.write(`✓ ${e.node} ${e.ms.toFixed(0)} ms\n`);
        break;
      case 'output':
      case 'preview':
        break;
    }
  };
}
