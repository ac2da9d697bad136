import { TextWidget } from './TextWidget.js';

interface Props {
  readonly id: string;
  readonly value: string;
  readonly root: 'models' | 'input';
  readonly extensions?: readonly string[];
  readonly invalid: boolean;
  readonly onChange: (value: string) => void;
}

/** A path relative to a server root; the placeholder says which root, since the browser cannot list it. */
export function PathWidget({ id, value, root, extensions, invalid, onChange }: Props) {
  const hint = `relative to ${root}/${extensions?.length ? ` (${extensions.join(', ')})` : ''}`;
  return (
    <span className="fg-path" title={hint}>
      <span className="fg-path-root">{root}/</span>
      <TextWidget id={id} value={value} multiline={false} invalid={invalid} placeholder={hint} onChange={onChange} />
    </span>
  );
}
