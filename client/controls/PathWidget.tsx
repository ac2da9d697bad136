import { TextWidget } from './TextWidget.js';

interface Props {
  readonly id: string;
  readonly value: string;
  readonly root: 'models' | 'input';
  readonly extensions?: readonly string[];
  readonly invalid: boolean;
  /** What an empty value means, when it is allowed (e.g. LoadModel's vae: "the model's own"). */
  readonly emptyMeans?: string;
  /** What the server has under the root (model folders), offered as a dropdown; free text is still allowed. */
  readonly options?: readonly string[] | null;
  readonly onChange: (value: string) => void;
}

/** A path relative to a server root; the placeholder says which root, the dropdown what the server has there. */
export function PathWidget({ id, value, root, extensions, invalid, emptyMeans, options, onChange }: Props) {
  const hint = emptyMeans ?? `relative to ${root}/${extensions?.length ? ` (${extensions.join(', ')})` : ''}`;
  const listId = options ? `${id}-options` : undefined;
  return (
    <span className="fg-path" title={hint}>
      <span className="fg-path-root">{root}/</span>
      <TextWidget id={id} value={value} multiline={false} invalid={invalid} placeholder={hint} list={listId} onChange={onChange} />
      {options && (
        <datalist id={listId}>
          {options.map((o) => <option key={o} value={o} />)}
        </datalist>
      )}
    </span>
  );
}
