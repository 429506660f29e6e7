// How a customer's state reads on the page: a word (never colour alone) on a high-contrast badge.
import { h } from "./dom.js";
import type { State } from "./types.js";

const LABELS: Record<State, string> = {
  ok: "OK",
  soft: "Soft limit reached",
  blocked: "Blocked",
  credits_exhausted: "Credits exhausted",
};

export function stateBadge(state: State): HTMLElement {
  return h("span", { class: `badge ${state}`, "data-state": state }, LABELS[state] ?? state);
}
