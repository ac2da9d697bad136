import { useEffect, useState } from 'react';
import { wheelIfScrollable } from './stop-canvas-events.js';

interface Props {
  readonly id: string;
  readonly value: number;
  readonly min: number;
  readonly max: number;
  readonly step?: number;
  readonly integer: boolean;
  readonly invalid: boolean;
  readonly onChange: (value: number) => void;
}

export function clampNumber(n: number, min: number, max: number, integer: boolean): number {
  const v = Math.min(max, Math.max(min, n));
  return integer ? Math.round(v) : v;
}

/**
 * An int or float param. What is typed is kept as text while editing (so "0." or "-" survive) and committed as soon
 * as it parses; leaving the field clamps to the definition's range and rounds ints, so a saved graph is always valid.
 */
export function NumberWidget({ id, value, min, max, step, integer, invalid, onChange }: Props) {
  const [text, setText] = useState(String(value));
  useEffect(() => setText(String(value)), [value]);
  const parsed = text.trim() === '' ? NaN : Number(text);
  const outOfRange = !Number.isFinite(parsed) || parsed < min || parsed > max || (integer && !Number.isInteger(parsed));
  const commit = () => {
    const next = Number.isFinite(parsed) ? clampNumber(parsed, min, max, integer) : value;
    setText(String(next));
    if (next !== value) onChange(next);
  };
  return (
    <input
      id={id}
      className="fg-input fg-number"
      type="number"
      inputMode={integer ? 'numeric' : 'decimal'}
      min={min}
      max={max}
      step={step ?? (integer ? 1 : 'any')}
      value={text}
      aria-invalid={invalid || outOfRange || undefined}
      title={`${integer ? 'integer' : 'number'} from ${min} to ${max}`}
      onChange={(e) => {
        setText(e.target.value);
        const n = Number(e.target.value);
        if (e.target.value.trim() !== '' && Number.isFinite(n)) onChange(n);
      }}
      onBlur={commit}
      onWheel={wheelIfScrollable}
      onKeyDown={(e) => {
        if (e.key === 'Enter') commit();
      }}
    />
  );
}
