interface Props {
  readonly id: string;
  readonly value: boolean;
  readonly onChange: (value: boolean) => void;
}

export function CheckboxWidget({ id, value, onChange }: Props) {
  return <input id={id} className="fg-checkbox" type="checkbox" checked={value} onChange={(e) => onChange(e.target.checked)} />;
}
