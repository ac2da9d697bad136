import { useCallback, useEffect, useState } from 'react';
import { fetchNodeDefs } from '../api/http.js';
import { NodeRegistry } from '../editor/node-registry.js';
import { Workbench } from './Workbench.js';

type Boot = { readonly registry: NodeRegistry } | { readonly error: string } | null;

/** Fetches the node definitions first: without them there is nothing to build a palette or a node from. */
export function App() {
  const [boot, setBoot] = useState<Boot>(null);
  const load = useCallback(() => {
    setBoot(null);
    fetchNodeDefs().then(
      (defs) => setBoot({ registry: new NodeRegistry(defs) }),
      (e: Error) => setBoot({ error: e.message }),
    );
  }, []);
  useEffect(load, [load]);

  if (!boot) return <div className="fg-splash">Loading node definitions…</div>;
  if ('error' in boot) {
    return (
      <div className="fg-splash" role="alert">
        <p>The FuseGraph server did not answer: {boot.error}</p>
        <button type="button" className="fg-button fg-button-primary" onClick={load}>Retry</button>
      </div>
    );
  }
  return <Workbench registry={boot.registry} />;
}
