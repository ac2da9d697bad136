import { useEffect, useState } from 'react';
import { wheelIfScrollable } from './stop-canvas-events.js';

interface Props {
  readonly id: string;
  readonly value: string;
  readonly multiline: boolean;
  readonly maxLength?: number;
  readonly invalid: boolean;
  readonly placeholder?: string;
  /** A datalist of suggestions (free text stays allowed). */
  readonly list?: string;
  readonly onChange: (value: string) => void;
}

/** A prompt or other string param. Every keystroke is committed; history folds a burst into one undo step. */
export function TextWidget({ id, value, multiline, maxLength, invalid, placeholder, list, onChange }: Props) {
  const [text, setText] = useState(value);
  useEffect(() => setText(value), [value]);
  const common = {
    id,
    value: text,
    maxLength,
    placeholder,
    spellCheck: false,
    'aria-invalid': invalid || undefined,
    onChange: (e: { target: { value: string } }) => {
      setText(e.target.value);
      onChange(e.target.value);
    },
  };
  return multiline
    ? <textarea className="fg-input fg-textarea" rows={3} onWheel={wheelIfScrollable} {...common} />
    : <input className="fg-input" type="text" list={list} {...common} />;
}
