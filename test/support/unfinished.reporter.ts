import type { Reporter, TestModule } from 'vitest/node';

/*
 * Names, at the very end of the output, every test file that did not pass and the tests in
 * it that never finished. A test worker that dies (a native crash, a signal) is otherwise
 * reported only as "Worker exited unexpectedly", without the file, and CI keeps only the
 * tail of the output.
 */
export default class UnfinishedReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const lines: string[] = [];
    for (const m of modules) {
      const state = m.state();
      if (state === 'passed' || state === 'skipped') continue;
      const open: string[] = [];
      let failed = 0;
      for (const t of m.children.allTests()) {
        const s = t.result().state;
        if (s === 'failed') failed++;
        else if (s === 'pending') open.push(t.fullName);
      }
      lines.push(`  ${m.project.name} ${m.relativeModuleId}: ${state}, ${failed} failed${open.length ? `, unfinished: ${open.join(' | ')}` : ''}`);
    }
    if (lines.length) process.stdout.write(`\ntest files that did not pass:\n${lines.join('\n')}\n`);
  }
}
