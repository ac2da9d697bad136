import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import type { RequestHandler } from 'express';
import { HttpError } from './http-error.js';

export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost' || h === '::1') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  // IPv4-mapped IPv6 loopback, e.g. ::ffff:127.0.0.1
  return h.startsWith('::ffff:127.');
}

/** Hashing first makes the comparison constant-time whatever the lengths. */
export function sameSecret(a: string, b: string): boolean {
  const da = createHash('sha256').update(a).digest();
  const db = createHash('sha256').update(b).digest();
  return timingSafeEqual(da, db);
}

function bearer(req: IncomingMessage): string | null {
  const h = req.headers.authorization;
  if (typeof h !== 'string') return null;
  const m = /^Bearer\s+(.+)$/i.exec(h.trim());
  return m?.[1] ?? null;
}

function queryToken(req: IncomingMessage): string | null {
  const url = new URL(req.url ?? '/', 'http://x');
  return url.searchParams.get('token');
}

/**
 * The token may come as `Authorization: Bearer` or, where a browser cannot set headers
 * (WebSocket constructor, <img src>), as `?token=`. Query tokens are accepted only for GET and upgrades,
 * so a state-changing request always needs the header.
 */
export function requestHasToken(req: IncomingMessage, token: string, allowQuery: boolean): boolean {
  const given = bearer(req) ?? (allowQuery ? queryToken(req) : null);
  return given !== null && sameSecret(given, token);
}

export function requireToken(token: string | undefined): RequestHandler {
  return (req, _res, next) => {
    if (token === undefined || requestHasToken(req, token, req.method === 'GET' || req.method === 'HEAD')) {
      next();
      return;
    }
    next(new HttpError(401, 'unauthorized', 'missing or wrong token: send "Authorization: Bearer <token>"'));
  };
}

/**
 * Without a token, the only thing between a web page the user visits and this server is the browser's
 * same-origin policy, which neither stops a foreign page from opening a WebSocket nor a DNS-rebound name
 * from reaching 127.0.0.1. So, tokenless, both the Host and any Origin must name a loopback host.
 */
export function originAllowed(req: IncomingMessage, token: string | undefined): boolean {
  if (token !== undefined) return true;
  const host = req.headers.host;
  if (host !== undefined && !isLoopbackHost(hostnameOf(`http://${host}`) ?? '')) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  return isLoopbackHost(hostnameOf(origin) ?? '');
}

function hostnameOf(url: string): string | null {
  try {
    return new URL(url).hostname;
  } catch {
    return null;
  }
}

export function requireSameOrigin(token: string | undefined): RequestHandler {
  return (req, _res, next) => {
    if (originAllowed(req, token)) next();
    else next(new HttpError(403, 'forbidden_origin', `requests for host ${String(req.headers.host)} from origin ${String(req.headers.origin ?? 'none')} are refused; start the server with a token to allow non-loopback access`));
  };
}
