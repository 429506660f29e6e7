// npm run bench:credits — the credit balance read alone (part 5 of bench:limits; see bench/creditHistory.ts).
//   DATABASE_URL=postgres://... → a fresh database on that server (dropped afterwards); unset → embedded engine.
import { creditHistoryBench } from "./creditHistory.js";

await creditHistoryBench(process.env.DATABASE_URL);
