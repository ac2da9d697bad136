import type { ErrorRequestHandler } from 'express';
import { HttpError } from './http-error.js';

/** body-parser and send attach these to their errors; we translate them instead of leaking stack traces. */
interface ExpressLibError {
  status?: number;
  statusCode?: number;
  type?: string;
  expose?: boolean;
  message?: string;
  code?: string;
}

export function toHttpError(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  const e = (typeof err === 'object' && err !== null ? err : {}) as ExpressLibError;
  switch (e.type) {
    case 'entity.parse.failed':
      return new HttpError(400, 'malformed_json', `request body is not valid JSON: ${e.message ?? 'parse error'}`);
    case 'entity.too.large':
      return new HttpError(413, 'body_too_large', 'request body is larger than the server accepts');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new HttpError(415, 'unsupported_encoding', e.message ?? 'unsupported body encoding');
  }
  const status = e.status ?? e.statusCode;
  if (e.code === 'ENOENT' || status === 404) return new HttpError(404, 'not_found', 'file not found');
  if (typeof status === 'number' && status >= 400 && status < 500 && e.expose !== false) {
    return new HttpError(status, 'bad_request', e.message ?? 'bad request');
  }
  return new HttpError(500, 'internal', 'internal server error');
}

export function errorMiddleware(log: (message: string, err: unknown) => void): ErrorRequestHandler {
  return (err, _req, res, next) => {
    const http = toHttpError(err);
    if (http.status >= 500) log('request failed', err);
    // A response that already started streaming (sendFile) cannot get a JSON body any more.
    if (res.headersSent) {
      next(err);
      return;
    }
    res.status(http.status).json({ error: http.code, message: http.message, ...http.extra });
  };
}
