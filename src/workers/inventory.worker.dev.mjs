// Source runs only (tests, `npm run dev`): loads the TypeScript worker through tsx.
// On Node 20, `execArgv: ['--import', 'tsx']` does not register tsx inside worker
// threads, but tsx's API does. The build runs the compiled inventory.worker.js instead.
import { register } from 'tsx/esm/api';

register();

export const { batch } = await import('./inventory.worker.ts');
