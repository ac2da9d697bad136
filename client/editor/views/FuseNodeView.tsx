import { memo, useLayoutEffect, useRef, useSyncExternalStore } from 'react';
import type { RenderEmit } from 'rete-react-plugin';
import { Presets } from 'rete-react-plugin';
import type { FileRef } from '../../../nodes/protocol.js';
import { ParamWidget } from '../../controls/ParamWidget.js';
import type { NodeStatus } from '../../runs/node-status.js';
import { issueField } from '../../runs/node-status.js';
import type { NodeStatusStore } from '../../runs/node-status-store.js';
import type { ParamValue } from '../graph-convert.js';
import type { FuseNode, Schemes } from '../schemes.js';
import { NodeRunStatus } from './NodeRunStatus.js';

const { RefSocket } = Presets.classic;

/** What a node view needs from outside rete; handed in by closure because each node is its own React root. */
export interface NodeViewServices {
  readonly status: NodeStatusStore;
  readonly setParam: (nodeId: string, name: string, value: ParamValue) => void;
  readonly openImage: (image: FileRef) => void;
}

interface Props {
  readonly data: FuseNode;
  readonly emit: RenderEmit<Schemes>;
  readonly services: NodeViewServices;
}

const STATE_LABEL: Record<string, string> = { queued: 'queued', running: 'running', cached: 'cached', done: 'done', error: 'error' };

function useNodeStatus(store: NodeStatusStore, id: string): NodeStatus {
  return useSyncExternalStore((cb) => store.subscribe(id, cb), () => store.get(id));
}

/** Keeps node.width/height equal to the rendered size, which the minimap, zoom-to-fit and auto-arrange read. */
function useMeasure(ref: React.RefObject<HTMLDivElement | null>, node: FuseNode) {
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () => {
      node.width = el.offsetWidth;
      node.height = el.offsetHeight;
    };
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, [ref, node]);
}

export function FuseNodeView({ data: node, emit, services }: Props) {
  const status = useNodeStatus(services.status, node.id);
  const ref = useRef<HTMLDivElement>(null);
  useMeasure(ref, node);

  const issuesByField = new Map<string, string[]>();
  const nodeIssues: string[] = [];
  for (const i of status.issues ?? []) {
    const field = issueField(i);
    const detail = [i.expected !== undefined ? `expected ${i.expected}` : '', i.actual !== undefined ? `got ${i.actual}` : ''].filter(Boolean).join(', ');
    const text = detail ? `${i.message} (${detail})` : i.message;
    if (field && (field in node.def.params || field in node.def.inputs)) {
      issuesByField.set(field, [...(issuesByField.get(field) ?? []), text]);
    } else {
      nodeIssues.push(text);
    }
  }
  const badInputs = [...issuesByField.keys()].filter((f) => f in node.def.inputs).join(',');
  const state = status.state;

  return (
    <div
      ref={ref}
      className={`fg-node fg-cat-${node.def.category}${node.selected ? ' fg-selected' : ''}${state ? ` fg-state-${state}` : ''}${status.issues?.length ? ' fg-has-issues' : ''}`}
      style={{ width: node.width }}
      data-node-id={node.id}
      data-node-type={node.type}
      data-state={state ?? 'idle'}
    >
      <header className="fg-node-header" title={node.def.description}>
        <span className="fg-node-title">{node.label}</span>
        <span className="fg-node-id">{node.id}</span>
        {state && (
          <span className={`fg-badge fg-badge-${state}`} data-testid="node-state">
            {STATE_LABEL[state]}{state === 'done' && status.ms !== undefined ? ` ${formatMs(status.ms)}` : ''}
          </span>
        )}
      </header>
      <NodePorts node={node} emit={emit} badInputs={badInputs} />
      {Object.keys(node.def.params).length > 0 && (
        <div className="fg-node-params">
          {Object.entries(node.def.params).map(([name, def]) => (
            <ParamWidget
              key={`${name}@${node.paramRevision}`}
              nodeId={node.id}
              name={name}
              def={def}
              value={node.params[name] ?? def.default}
              issues={issuesByField.get(name) ?? []}
              onChange={(v) => services.setParam(node.id, name, v)}
            />
          ))}
        </div>
      )}
      {[...issuesByField.entries()].filter(([f]) => f in node.def.inputs).map(([f, msgs]) => (
        <div key={f} className="fg-node-error" role="alert">{f}: {msgs.join('; ')}</div>
      ))}
      <NodeRunStatus status={status} nodeIssues={nodeIssues} onOpenImage={services.openImage} />
    </div>
  );
}

function formatMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

interface PortsProps {
  readonly node: FuseNode;
  readonly emit: RenderEmit<Schemes>;
  readonly badInputs: string;
}

/**
 * Inputs on the left, outputs on the right, one row each. Memoised: a progress message re-renders the node for
 * its status, and re-rendering sockets would re-emit them to rete for nothing.
 */
const NodePorts = memo(function NodePorts({ node, emit, badInputs }: PortsProps) {
  const bad = new Set(badInputs ? badInputs.split(',') : []);
  const inputs = Object.entries(node.inputs).sort(([, a], [, b]) => (a?.index ?? 0) - (b?.index ?? 0));
  const outputs = Object.entries(node.outputs).sort(([, a], [, b]) => (a?.index ?? 0) - (b?.index ?? 0));
  const rows = Math.max(inputs.length, outputs.length);
  if (!rows) return null;
  return (
    <div className="fg-node-ports">
      {Array.from({ length: rows }, (_, i) => {
        const [ik, input] = inputs[i] ?? [];
        const [ok, output] = outputs[i] ?? [];
        return (
          <div className="fg-port-row" key={i}>
            {ik && input ? (
              <div className={`fg-port fg-port-input${bad.has(ik) ? ' fg-port-invalid' : ''}`} data-side="input" data-key={ik} data-type={input.socket.type}
                title={`${node.def.inputs[ik]?.description ?? ''} (${input.socket.type})`}>
                <RefSocket name="fg-socket-ref" side="input" socketKey={ik} nodeId={node.id} emit={emit} payload={input.socket} />
                <span className="fg-port-label">{ik}{node.def.inputs[ik]?.optional ? <em> (optional)</em> : null}</span>
              </div>
            ) : <div />}
            {ok && output ? (
              <div className="fg-port fg-port-output" data-side="output" data-key={ok} data-type={output.socket.type}
                title={`${node.def.outputs[ok]?.description ?? ''} (${output.socket.type})`}>
                <span className="fg-port-label">{ok}</span>
                <RefSocket name="fg-socket-ref" side="output" socketKey={ok} nodeId={node.id} emit={emit} payload={output.socket} />
              </div>
            ) : <div />}
          </div>
        );
      })}
    </div>
  );
});
