import { NumberWidget } from './NumberWidget.js';

interface Props {
  readonly id: string;
  readonly value: number;
  readonly min: number;
  readonly max: number;
  readonly invalid: boolean;
  readonly onChange: (value: number) => void;
}

/** A uniformly random integer in [min, max]; seeds reach 2^32 - 1, beyond what Math.random spreads evenly. */
export function randomSeed(min: number, max: number): number {
  const span = max - min + 1;
  const [word] = crypto.getRandomValues(new Uint32Array(1));
  return min + ((word ?? 0) % span);
}

export function SeedWidget({ id, value, min, max, invalid, onChange }: Props) {
  return (
    <span className="fg-seed">
      <NumberWidget id={id} value={value} min={min} max={max} integer invalid={invalid} onChange={onChange} />
      <button type="button" className="fg-icon-button" title="Randomise seed" aria-label="Randomise seed" onClick={() => onChange(randomSeed(min, max))}>
        <svg viewBox="0 0 16 16" width="14" height="14" aria-hidden="true">
          <rect x="1.5" y="1.5" width="13" height="13" rx="3" fill="none" stroke="currentColor" strokeWidth="1.5" />
          <circle cx="5" cy="5" r="1.3" fill="currentColor" />
          <circle cx="11" cy="11" r="1.3" fill="currentColor" />
          <circle cx="8" cy="8" r="1.3" fill="currentColor" />
        </svg>
      </button>
    </span>
  );
}
