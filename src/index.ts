// The package's entry point for embedding Tally in another Node.js program (npm start uses src/main.ts).
export { type Clock, ManualClock, systemClock } from "./clock.js";
export { type Config, ConfigError, loadConfig } from "./config.js";
export type { EventInput } from "./ingest/event.js";
export { EntitlementClient, type UsageLimitOptions, usageLimit, verifyTallySignature } from "./middleware/index.js";
export { createTally, type Tally, type TallyOptions } from "./tally.js";
