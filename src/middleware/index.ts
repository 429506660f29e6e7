// `import { usageLimit } from "tally/middleware"`: the usageLimit middleware lives in the TypeScript client
// (clients/typescript, `@tally/client/middleware`) and is re-exported here, one implementation for both packages;
// the webhook signature check is Tally's own.
export {
  type Decision,
  EntitlementClient,
  TallyUnavailableError,
  type UsageLimitOptions,
  usageLimit,
} from "../../clients/typescript/src/middleware.js";
export { verifySignature as verifyTallySignature } from "../webhooks/signature.js";
