import { useEffect } from 'react';
import { withToken } from '../api/auth.js';

interface Props {
  readonly image: { readonly name: string; readonly url: string };
  readonly onClose: () => void;
  /** Opens the graph embedded in this image. */
  readonly onOpenGraph: () => void;
}

export function Lightbox({ image, onClose, onOpenGraph }: Props) {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape') onClose();
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, [onClose]);
  return (
    <div className="fg-overlay" role="dialog" aria-label={image.name} onClick={onClose}>
      <figure className="fg-lightbox" onClick={(e) => e.stopPropagation()}>
        <img src={withToken(image.url)} alt={image.name} />
        <figcaption>
          <span>{image.name}</span>
          <span className="fg-spacer" />
          <button type="button" className="fg-button" onClick={onOpenGraph}>Open its graph</button>
          <a className="fg-button" href={withToken(image.url)} download={image.name}>Download</a>
          <button type="button" className="fg-button" onClick={onClose}>Close</button>
        </figcaption>
      </figure>
    </div>
  );
}
