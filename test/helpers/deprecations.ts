// Nothing deprecated: every DeprecationWarning of this test process (pg's "Calling client.query() when the client is
// already executing a query", say) and of the Tally processes its tests spawn is collected here, and the setup file
// test/helpers/nothingDeprecated.ts fails the test (or the file) it appeared in. Node warns once per process for
// each deprecated call site, and vitest runs each test file in a process of its own: the first use in a file fails.

const found: string[] = [];

process.on("warning", (w) => {
  if (w.name === "DeprecationWarning") found.push(w.stack ?? `${w.name}: ${w.message}`);
});

interface Watched {
  label: string;
  read: () => string;
  /** How far its output was read, at a line's end. */
  checked: number;
}
const outputs: Watched[] = [];

/** Watches a child process's output (stderr, where Node prints its warnings) for deprecation warnings. */
export function watchOutput(label: string, read: () => string): void {
  outputs.push({ label, read, checked: 0 });
}

/** The deprecation warnings since the last call. */
export function takeDeprecations(): string[] {
  const out = found.splice(0);
  for (const o of outputs) {
    const text = o.read();
    const end = text.lastIndexOf("\n") + 1;
    for (const line of text.slice(o.checked, end).split("\n")) {
      if (line.includes("DeprecationWarning")) out.push(`${o.label}: ${line}`);
    }
    o.checked = Math.max(o.checked, end);
  }
  return out;
}
