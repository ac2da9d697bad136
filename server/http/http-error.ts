/**
 * The one error type route handlers throw. The error middleware renders it as
 * `{ error: code, message, ...extra }` with its status, so every failure has the same shape.
 */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Readonly<Record<string, unknown>> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export function notFound(what: string): HttpError {
  return new HttpError(404, 'not_found', `${what} not found`);
}

export function badRequest(message: string, extra?: Record<string, unknown>): HttpError {
  return new HttpError(400, 'bad_request', message, extra);
}
