/**
 * A one-line progress bar on stderr, drawn only on an interactive terminal: never in
 * CI (`CI` set), never when stderr is a pipe or a file, never with `--json`.
 */
export interface Progress {
  phase(text: string): void;
  step(): void;
  done(): void;
}

const NOOP: Progress = { phase() {}, step() {}, done() {} };

export function createProgress(total: number, enabled: boolean): Progress {
  const stream = process.stderr;
  if (!enabled || !stream.isTTY || process.env.CI) return NOOP;
  let done = 0;
  let text = '';
  const started = Date.now();
  const draw = () => {
    const width = 28;
    const fraction = total > 0 ? Math.min(1, done / total) : 0;
    const filled = Math.round(fraction * width);
    const elapsed = Math.round((Date.now() - started) / 1000);
    const line = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${Math.round(fraction * 100)
      .toString()
      .padStart(3)}% ${elapsed}s ${text}`;
    const columns = stream.columns || 100;
    stream.write(`\r${line.slice(0, columns - 1).padEnd(columns - 1)}`);
  };
  return {
    phase(next) {
      text = next;
      draw();
    },
    step() {
      done += 1;
      draw();
    },
    done() {
      stream.write(`\r${' '.repeat((stream.columns || 100) - 1)}\r`);
    },
  };
}
