import type { ReactNode } from 'react';
import { useState } from 'react';
import type { ParamDef } from '../../nodes/define.js';
import type { ModelEntry } from '../api/http.js';
import { normalizeModelPath } from '../api/model-list.js';
import type { ParamValue } from '../editor/graph-convert.js';
import { CheckboxWidget } from './CheckboxWidget.js';
import { NumberWidget } from './NumberWidget.js';
import { PathWidget } from './PathWidget.js';
import { PromptWidget } from './PromptWidget.js';
import { SeedWidget } from './SeedWidget.js';
import { SelectWidget } from './SelectWidget.js';
import { stopCanvasEvents } from './stop-canvas-events.js';
import { TextWidget } from './TextWidget.js';

interface Props {
  readonly nodeId: string;
  readonly name: string;
  readonly def: ParamDef;
  readonly value: ParamValue;
  /** Validation messages about this param from the last submit. */
  readonly issues: readonly string[];
  /** For model paths: the folders and files the server has (null: not known yet). */
  readonly modelPaths?: readonly ModelEntry[] | null;
  readonly onChange: (value: ParamValue) => void;
}

const asNumber = (v: ParamValue, fallback: number) => (typeof v === 'number' ? v : Number.isFinite(Number(v)) ? Number(v) : fallback);
const asString = (v: ParamValue) => (v === null ? '' : String(v));

/** One param row: the widget its kind calls for, its name, its description as a tooltip, and its issues. */
export function ParamWidget({ nodeId, name, def, value: initial, issues, modelPaths, onChange: commit }: Props) {
  const id = `p-${nodeId}-${name}`;
  // The node is not re-rendered on an edit (rete owns it), so the row keeps the value it shows; undo and redo
  // remount it through its key instead.
  const [value, setValue] = useState(initial);
  const onChange = (v: ParamValue) => {
    setValue(v);
    commit(v);
  };
  const invalid = issues.length > 0;
  // Flagged as soon as the graph opens and while typing, not only when a run is refused.
  const offered = def.kind === 'path' && def.root === 'models' && modelPaths
    ? modelPaths.filter((e) => !def.lists || def.lists.includes(e.kind)).map((e) => e.path)
    : null;
  const none = def.kind === 'path' && def.emptyMeans !== undefined && asString(value).trim() === '';
  const missing = offered && !none && !modelPaths!.some((e) => e.path === normalizeModelPath(asString(value)));
  const warning = missing ? `not installed: the server has ${offered.length ? offered.join(', ') : 'no models of this kind'}` : undefined;
  let widget: ReactNode;
  switch (def.kind) {
    case 'string':
      // EncodePrompt's `text` (the one multiline text param): token counts and `embedding:` completion.
      widget = def.multiline && name === 'text'
        ? <PromptWidget id={id} value={asString(value)} maxLength={def.maxLength} invalid={invalid} onChange={onChange} />
        : <TextWidget id={id} value={asString(value)} multiline={Boolean(def.multiline)} maxLength={def.maxLength} invalid={invalid} onChange={onChange} />;
      break;
    case 'path':
      widget = (
        <PathWidget id={id} value={asString(value)} root={def.root} extensions={def.extensions} invalid={invalid || Boolean(warning)}
          emptyMeans={def.emptyMeans !== undefined ? `empty: ${def.emptyMeans}` : undefined}
          options={offered ?? undefined} onChange={onChange} />
      );
      break;
    case 'int':
      widget = def.seed
        ? <SeedWidget id={id} value={asNumber(value, def.default)} min={def.min} max={def.max} invalid={invalid} onChange={onChange} />
        : <NumberWidget id={id} value={asNumber(value, def.default)} min={def.min} max={def.max} step={def.step} integer invalid={invalid} onChange={onChange} />;
      break;
    case 'float':
      widget = <NumberWidget id={id} value={asNumber(value, def.default)} min={def.min} max={def.max} step={def.step} integer={false} invalid={invalid} onChange={onChange} />;
      break;
    case 'enum':
      widget = <SelectWidget id={id} value={asString(value)} options={def.options} invalid={invalid} onChange={onChange} />;
      break;
    case 'bool':
      widget = <CheckboxWidget id={id} value={value === true} onChange={onChange} />;
      break;
  }
  const stacked = def.kind === 'string' && def.multiline;
  return (
    <div className={`fg-param${stacked ? ' fg-param-stacked' : ''}${invalid ? ' fg-param-invalid' : ''}`} data-param={name} {...stopCanvasEvents}>
      <label className="fg-param-label" htmlFor={id} title={def.description}>{name}</label>
      <div className="fg-param-widget">{widget}</div>
      {issues.map((m, i) => <div key={i} className="fg-field-issue" role="alert">{m}</div>)}
      {warning && <div className="fg-field-issue fg-field-warning" data-testid="field-warning">{warning}</div>}
    </div>
  );
}
