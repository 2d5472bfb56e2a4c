// Server-Sent Events over fetch, so the Authorization header can be sent (EventSource cannot).
// Parses the text/event-stream format: `event:`, `data:`, `id:` fields, a blank line ends an
// event, lines starting with ':' are comments (the server's heartbeats).

/**
 * Reads one stream until it ends, `signal` aborts it, or it fails. Resolves with how it ended:
 * `{ ended: 'closed' | 'no-content' | 'aborted' | 'error', status?, lastEventId }`.
 */
export async function readEventStream(url, { token, lastEventId, signal, onEvent, onOpen }) {
  const headers = { Authorization: `Bearer ${token}`, Accept: 'text/event-stream' };
  if (lastEventId !== undefined && lastEventId !== null) headers['Last-Event-ID'] = String(lastEventId);
  let res;
  try {
    res = await fetch(url, { headers, signal, cache: 'no-store' });
  } catch (err) {
    return { ended: signal?.aborted ? 'aborted' : 'error', lastEventId };
  }
  if (res.status === 204) return { ended: 'no-content', status: 204, lastEventId };
  if (!res.ok || !res.body) {
    let problem = null;
    try {
      problem = await res.json();
    } catch {
      // not a problem document
    }
    return { ended: 'error', status: res.status, problem, lastEventId };
  }
  onOpen?.();
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { type: 'message', data: [], id: undefined };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let nl;
      while ((nl = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + (buffer[nl] === '\r' && buffer[nl + 1] === '\n' ? 2 : 1));
        if (line === '') {
          if (event.id !== undefined) lastEventId = event.id;
          if (event.data.length > 0) onEvent({ type: event.type, data: event.data.join('\n'), id: event.id });
          event = { type: 'message', data: [], id: undefined };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const val = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event.type = val;
        else if (field === 'data') event.data.push(val);
        else if (field === 'id') event.id = val;
      }
    }
  } catch {
    return { ended: signal?.aborted ? 'aborted' : 'error', lastEventId };
  }
  return { ended: 'closed', lastEventId };
}
