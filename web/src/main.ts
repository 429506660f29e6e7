// Entry: /dashboard (sign in with an API key kept in this tab's sessionStorage only; #/ overview,
// #/customers/<id> one customer) or /embed/customer?token=… (one customer, nothing else, for an iframe).
import { ApiError, createApi } from "./api.js";
import { customerView } from "./customer.js";
import { h, message, replace } from "./dom.js";
import { operatorView } from "./operator.js";
import "./style.css";
import type { Overview } from "./types.js";

const KEY = "tally.key";
const TOKEN = "tally.portal-token";
const main = document.getElementById("main") as HTMLElement;
const top = document.getElementById("top") as HTMLElement;

function fail(e: unknown): void {
  const text =
    e instanceof ApiError
      ? e.status === 401
        ? e.code === "token_expired"
          ? "This link has expired. Ask for a new one."
          : "This key or link is not valid."
        : `Tally answered ${e.status}: ${e.message}`
      : `Something went wrong: ${(e as Error).message}`;
  replace(main, message(text, "alert"));
  main.dataset.error = e instanceof ApiError ? (e.code ?? String(e.status)) : "error";
}

async function embed(): Promise<void> {
  document.body.classList.add("embed");
  // The token arrives in the URL once; it is kept in this tab and taken out of the address bar and history.
  const fromUrl = new URL(location.href).searchParams.get("token");
  if (fromUrl) {
    sessionStorage.setItem(TOKEN, fromUrl);
    history.replaceState(null, "", location.pathname);
  }
  const token = sessionStorage.getItem(TOKEN);
  if (!token) return fail(new Error("this page needs a portal token (?token=…)"));
  const api = createApi(token, () => sessionStorage.removeItem(TOKEN));
  try {
    // A portal token is bound to exactly one customer.
    const o = await api.get<Overview>("/v1/dashboard/customers");
    const id = o.bound_customer;
    if (!id) throw new Error("no customer for this token");
    await customerView(api, main, id);
  } catch (e) {
    fail(e);
  }
}

function signIn(reason?: string): void {
  replace(top, h("span", { class: "brand" }, "Tally"));
  const input = h("input", {
    id: "api-key",
    name: "api-key",
    type: "password",
    autocomplete: "off",
    required: true,
    spellcheck: "false",
  });
  const form = h(
    "form",
    {
      class: "sign-in",
      onsubmit: (e: Event) => {
        e.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        void route();
      },
    },
    h("h1", {}, "Sign in"),
    h(
      "p",
      { class: "muted" },
      "Paste an API key (admin, or read). It stays in this browser tab only and is forgotten when the tab closes.",
    ),
    reason ? message(reason, "alert") : null,
    h("label", { for: "api-key" }, "API key"),
    input,
    h("button", { type: "submit" }, "Sign in"),
  );
  replace(main, form);
  input.focus();
}

/** The operator's header; a key bound to one customer gets no link to the customer list. */
function nav(bound: string | null): void {
  const out = h(
    "button",
    {
      type: "button",
      class: "secondary",
      onclick: () => {
        sessionStorage.removeItem(KEY);
        location.hash = "";
        signIn();
      },
    },
    "Sign out",
  );
  replace(
    top,
    h("a", { class: "brand", href: "#/" }, "Tally"),
    bound ? null : h("a", { href: "#/" }, "Customers"),
    out,
  );
}

let boundCustomer: string | null | undefined;
let views = 0;

async function route(): Promise<void> {
  // A new view: the markers the previous one set (ready, complete, error) no longer hold.
  for (const k of ["ready", "complete", "error"]) delete main.dataset[k];
  main.dataset.view = String(++views);
  const key = sessionStorage.getItem(KEY);
  if (!key) return signIn();
  const api = createApi(key, () => {
    sessionStorage.removeItem(KEY);
    boundCustomer = undefined;
  });
  replace(main, message("Loading…"));
  try {
    const match = /^#\/customers\/(.+)$/.exec(location.hash);
    if (match?.[1]) {
      nav(boundCustomer ?? null);
      return await customerView(api, main, decodeURIComponent(match[1]));
    }
    nav(boundCustomer ?? null);
    await operatorView(api, main, (customer) => {
      // A key bound to one customer goes straight to that customer's view.
      boundCustomer = customer;
      location.hash = `#/customers/${encodeURIComponent(customer)}`;
    });
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signIn("That key was not accepted. Check it and try again.");
    fail(e);
  }
}

if (location.pathname.startsWith("/embed/")) void embed();
else {
  window.addEventListener("hashchange", () => void route());
  void route();
}
