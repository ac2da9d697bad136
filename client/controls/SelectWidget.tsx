interface Props {
  readonly id: string;
  readonly value: string;
  readonly options: readonly string[];
  readonly invalid: boolean;
  readonly onChange: (value: string) => void;
}

/** An enum param. A value the definition no longer lists (an old graph) stays visible instead of silently changing. */
export function SelectWidget({ id, value, options, invalid, onChange }: Props) {
  const known = options.includes(value);
  return (
    <select id={id} className="fg-input fg-select" value={value} aria-invalid={invalid || !known || undefined} onChange={(e) => onChange(e.target.value)}>
      {!known && <option value={value}>{value} (unknown)</option>}
      {options.map((o) => <option key={o} value={o}>{o}</option>)}
    </select>
  );
}
