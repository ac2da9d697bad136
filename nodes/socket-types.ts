/** The value kinds that flow along links. A link is valid only between sockets of the same type. */
export const SOCKET_TYPES = ['MODEL', 'CONDITIONING', 'LATENT', 'NOISE', 'SALIENCY', 'IMAGE'] as const;
export type SocketType = (typeof SOCKET_TYPES)[number];

/**
 * NOISE and SALIENCY are per-timestep values: they are evaluated inside a DDIMStep loop at each t,
 * not once per run. The executor needs this to know which nodes are memoised per step.
 */
export type PerStepSocket = Extract<SocketType, 'NOISE' | 'SALIENCY'>;
export const PER_STEP_SOCKETS: ReadonlySet<SocketType> = new Set<PerStepSocket>(['NOISE', 'SALIENCY']);

export function socketsCompatible(output: SocketType, input: SocketType): boolean {
  return output === input;
}

/** Display colours shared by the editor and docs; one per socket type. */
export const SOCKET_COLORS: Record<SocketType, string> = {
  MODEL: '#b39ddb',
  CONDITIONING: '#ffca28',
  LATENT: '#f06292',
  NOISE: '#4fc3f7',
  SALIENCY: '#81c784',
  IMAGE: '#64b5f6',
};
