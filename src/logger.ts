import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout. Order lines carry `order_id` and `stage`; request lines a request id. */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'ordersaga' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
