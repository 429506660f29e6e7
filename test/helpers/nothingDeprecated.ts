// A setup file (vitest.config.ts): a deprecated API used by a test, by the code it runs or by a Tally process it
// spawned fails that test; used in a hook (beforeAll, afterAll), it fails the file.
import { afterAll, afterEach } from "vitest";
import { takeDeprecations } from "./deprecations.js";

function failOnDeprecations(where: string): void {
  const warnings = takeDeprecations();
  if (warnings.length > 0) throw new Error(`a deprecated API was used ${where}:\n${warnings.join("\n")}`);
}

afterEach(() => failOnDeprecations("during this test"));
afterAll(() => failOnDeprecations("in this file's hooks"));
