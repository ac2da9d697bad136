import { memo, useLayoutEffect, useRef, useState, useSyncExternalStore } from 'react';
import type { RenderEmit } from 'rete-react-plugin';
import { Presets } from 'rete-react-plugin';
import type { FileRef } from '../../../nodes/protocol.js';
import type { ModelList } from '../../api/model-list.js';
import { stopCanvasEvents } from '../../controls/stop-canvas-events.js';
import { ParamWidget } from '../../controls/ParamWidget.js';
import type { NodeStatus } from '../../runs/node-status.js';
import { issueField } from '../../runs/node-status.js';
import type { NodeStatusStore } from '../../runs/node-status-store.js';
import type { ParamValue } from '../graph-convert.js';
import type { NodeUi } from '../node-ui-action.js';
import type { FuseNode, Schemes } from '../schemes.js';
import type { ScheduleSegment } from '../schedule.js';
import { scheduleRole } from '../schedule.js';
import { NodeRunStatus } from './NodeRunStatus.js';
import { ScheduleTimeline } from './ScheduleTimeline.js';

const { RefSocket } = Presets.classic;

/** What a node view needs from outside rete; handed in by closure because each node is its own React root. */
export interface NodeViewServices {
  readonly status: NodeStatusStore;
  readonly setParam: (nodeId: string, name: string, value: ParamValue) => void;
  readonly openImage: (image: FileRef) => void;
  readonly models: ModelList;
  /** Title, colour, collapse or mode of one node, as one undoable edit. */
  readonly setNodeUi: (nodeId: string, patch: NodeUi) => void;
  /** The node's measured size changed (groups around it follow). */
  readonly nodeResized: () => void;
  /** Bumps on every graph change, for views that read the wiring. */
  readonly graph: { readonly subscribe: (l: () => void) => () => void; readonly revision: () => number };
  /** The fusion schedule a switch or sampler shows, from the wired graph. */
  readonly schedule: (nodeId: string) => ScheduleSegment[];
  /** A param edited outside its widget (the timeline's handle): the widget shows the new value. */
  readonly setParamFromView: (nodeId: string, name: string, value: ParamValue) => void;
}

interface Props {
  readonly data: FuseNode;
  readonly emit: RenderEmit<Schemes>;
  readonly services: NodeViewServices;
}

const STATE_LABEL: Record<string, string> = {
  queued: 'queued', running: 'running', cached: 'cached', done: 'done', error: 'error', cancelled: 'cancelled',
};

/** A per-step node runs inside its sampler's loop: "per step" while it does, then what the sampler became. */
function stateLabel(status: NodeStatus): string {
  const state = status.state ?? '';
  if (status.perStep && state === 'running') return 'per step';
  return STATE_LABEL[state] ?? state;
}

/** Sent to a node's title element to start renaming it. */
export const RENAME_EVENT = 'fg-rename';

function useNodeStatus(store: NodeStatusStore, id: string): NodeStatus {
  return useSyncExternalStore((cb) => store.subscribe(id, cb), () => store.get(id));
}

/** Keeps node.width/height equal to the rendered size, which the minimap, zoom-to-fit and auto-arrange read. */
function useMeasure(ref: React.RefObject<HTMLDivElement | null>, node: FuseNode, resized: () => void) {
  useLayoutEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () => {
      if (node.width === el.offsetWidth && node.height === el.offsetHeight) return;
      node.width = el.offsetWidth;
      node.height = el.offsetHeight;
      resized();
    };
    measure();
    const ro = new ResizeObserver(measure);
    ro.observe(el);
    return () => ro.disconnect();
  }, [ref, node, resized]);
}

export function FuseNodeView({ data: node, emit, services }: Props) {
  const status = useNodeStatus(services.status, node.id);
  const modelPaths = useSyncExternalStore(services.models.subscribe, services.models.paths);
  const ref = useRef<HTMLDivElement>(null);
  const [renaming, setRenaming] = useState(false);
  const titleRef = useRef<HTMLSpanElement>(null);
  const renameCancelled = useRef(false);
  // The editor sends RENAME_EVENT on a double press of the title (see FuseEditor.renameOnDoublePress).
  useLayoutEffect(() => {
    const el = titleRef.current;
    if (!el) return;
    const start = () => {
      renameCancelled.current = false;
      setRenaming(true);
    };
    el.addEventListener(RENAME_EVENT, start);
    return () => el.removeEventListener(RENAME_EVENT, start);
  });
  useMeasure(ref, node, services.nodeResized);

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
      className={`fg-node fg-cat-${node.def.category}${node.selected ? ' fg-selected' : ''}${state ? ` fg-state-${state}` : ''}${status.issues?.length ? ' fg-has-issues' : ''}${node.mode ? ` fg-mode-${node.mode}` : ''}${node.collapsed ? ' fg-collapsed' : ''}`}
      style={{ width: node.width, ...(node.color ? { '--node-color': node.color } as React.CSSProperties : {}) }}
      data-node-id={node.id}
      data-node-type={node.type}
      data-state={state ?? 'idle'}
      data-mode={node.mode ?? 'run'}
    >
      <header className="fg-node-header" title={node.def.description}>
        <button type="button" className="fg-node-collapse" title={node.collapsed ? 'Expand' : 'Collapse'} data-testid="node-collapse"
          {...stopCanvasEvents}
          // rete may re-order the node's element under a press, and a moved element gets no click: the release toggles,
          // and a click counts only from the keyboard (detail 0).
          onPointerUp={(e) => e.button === 0 && services.setNodeUi(node.id, { collapsed: !node.collapsed })}
          onClick={(e) => e.detail === 0 && services.setNodeUi(node.id, { collapsed: !node.collapsed })}>{node.collapsed ? '▸' : '▾'}</button>
        {renaming ? (
          <input
            className="fg-input fg-node-rename"
            defaultValue={node.title ?? node.label}
            autoFocus
            aria-label="Node title"
            {...stopCanvasEvents}
            onKeyDown={(e) => {
              if (e.key === 'Enter') e.currentTarget.blur();
              if (e.key === 'Escape') {
                renameCancelled.current = true;
                setRenaming(false);
              }
            }}
            onBlur={(e) => {
              setRenaming(false);
              // Removing the focused input (Escape) may blur it too; that blur keeps the old title.
              if (renameCancelled.current) {
                renameCancelled.current = false;
                return;
              }
              const t = e.currentTarget.value.trim();
              services.setNodeUi(node.id, { title: !t || t === node.label ? undefined : t });
            }}
          />
        ) : (
          <span ref={titleRef} className="fg-node-title" title="Double-click to rename">
            {node.title ?? node.label}
          </span>
        )}
        <span className="fg-node-id">{node.title ? `${node.label} · ${node.id}` : node.id}</span>
        {node.mode && <span className={`fg-badge fg-badge-${node.mode}`} data-testid="node-mode">{node.mode === 'bypass' ? 'bypassed' : 'muted'}</span>}
        {state && (
          <span className={`fg-badge fg-badge-${state}`} data-testid="node-state">
            {stateLabel(status)}{state === 'done' && status.ms !== undefined ? ` ${formatMs(status.ms)}` : ''}
          </span>
        )}
      </header>
      <NodePorts node={node} emit={emit} badInputs={badInputs} />
      {!node.collapsed && Object.keys(node.def.params).length > 0 && (
        <div className="fg-node-params">
          {Object.entries(node.def.params).map(([name, def]) => (
            <ParamWidget
              key={`${name}@${node.paramRevision}`}
              nodeId={node.id}
              name={name}
              def={def}
              value={node.params[name] ?? def.default}
              issues={issuesByField.get(name) ?? []}
              modelPaths={modelPaths}
              onChange={(v) => services.setParam(node.id, name, v)}
            />
          ))}
        </div>
      )}
      {[...issuesByField.entries()].filter(([f]) => f in node.def.inputs).map(([f, msgs]) => (
        <div key={f} className="fg-node-error" role="alert">{f}: {msgs.join('; ')}</div>
      ))}
      {!node.collapsed && scheduleRole(node.def) && <NodeSchedule node={node} status={status} services={services} />}
      {!node.collapsed && <NodeRunStatus status={status} nodeIssues={nodeIssues} onOpenImage={services.openImage} />}
    </div>
  );
}

/** The schedule timeline of a switch or sampler, recomputed whenever the graph changes. */
function NodeSchedule({ node, status, services }: { node: FuseNode; status: NodeStatus; services: NodeViewServices }) {
  useSyncExternalStore(services.graph.subscribe, services.graph.revision);
  const segments = services.schedule(node.id);
  if (!segments.length) return null;
  const role = scheduleRole(node.def);
  const running = status.state === 'running';
  const cursor = running ? (role === 'sampler' ? status.progress?.t : status.t) : undefined;
  const tDef = node.def.params.t;
  const split = role === 'switch' && tDef?.kind === 'int'
    ? { t: Number(node.params.t ?? tDef.default), step: tDef.step ?? 1, onChange: (t: number) => services.setParamFromView(node.id, 't', t) }
    : undefined;
  return <ScheduleTimeline segments={segments} {...(cursor !== undefined ? { cursor } : {})} {...(split ? { split } : {})} />;
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
