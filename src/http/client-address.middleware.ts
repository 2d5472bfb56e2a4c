import type { IncomingMessage } from 'node:http';
import { BlockList, isIP } from 'node:net';
import type { MiddlewareHandler } from 'hono';

export interface ClientAddressOptions {
  /** Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` is believed (`TRUST_PROXY`); empty: nobody's. */
  trustProxy: readonly string[];
}

declare module 'hono' {
  interface ContextVariableMap {
    /** The client's IP address, or `unknown` when there is no socket (e.g. `app.request()` in tests). */
    clientAddress: string;
  }
}

/**
 * Sets `c.var.clientAddress`: the address of the socket's peer. Only when that peer is a trusted
 * proxy is `X-Forwarded-For` read, right to left, skipping trusted proxies: the first address that
 * is not one is the client (a client can put anything at the left end of the header, so the left
 * end is never believed unless every hop after it is trusted).
 */
export function clientAddress({ trustProxy }: ClientAddressOptions): MiddlewareHandler {
  const trusted = new BlockList();
  for (const entry of trustProxy) {
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) trusted.addAddress(address, family);
    else trusted.addSubnet(address, Number(prefix), family);
  }
  const isTrusted = (address: string) => trustProxy.length > 0 && trusted.check(address, isIP(address) === 6 ? 'ipv6' : 'ipv4');

  return async function clientAddress(c, next) {
    const incoming = (c.env as { incoming?: IncomingMessage } | undefined)?.incoming;
    const peer = normalize(incoming?.socket?.remoteAddress);
    let address = peer ?? 'unknown';
    if (peer && isTrusted(peer)) {
      const hops = (c.req.header('X-Forwarded-For') ?? '')
        .split(',')
        .map((h) => h.trim())
        .filter(Boolean)
        .reverse();
      for (const hop of hops) {
        const hopAddress = normalize(hop);
        if (!hopAddress) break; // not an address: stop at the last proxy we trust
        address = hopAddress;
        if (!isTrusted(hopAddress)) break;
      }
    }
    c.set('clientAddress', address);
    await next();
  };
}

/** An IP address without an IPv4-mapped prefix or zone; `undefined` when it is not an address. */
function normalize(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let a = raw.startsWith('[') && raw.endsWith(']') ? raw.slice(1, -1) : raw;
  const zone = a.indexOf('%');
  if (zone !== -1) a = a.slice(0, zone);
  if (a.toLowerCase().startsWith('::ffff:') && isIP(a.slice(7)) === 4) a = a.slice(7);
  return isIP(a) ? a : undefined;
}

/**
 * The rate-limit key for an address: IPv4 as it is, IPv6 by its /64 (one subscriber's network: a
 * client given a /64 could otherwise use a fresh address for every request).
 */
export function addressKey(address: string): string {
  if (isIP(address) !== 6) return address;
  const [head = '', tail] = address.split('::') as [string, string | undefined];
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  // An embedded IPv4 tail (::ffff:1.2.3.4 style) fills two groups.
  const width = (groups: string[]) => groups.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const groups = tail === undefined ? headGroups : [...headGroups, ...Array<string>(8 - width(headGroups) - width(tailGroups)).fill('0'), ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
