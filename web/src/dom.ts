// A tiny element builder: h("td", { class: "num" }, "12.30"). Text is always set as text, never as HTML.
type Attrs = Record<string, string | number | boolean | null | undefined | ((e: Event) => void)>;
type Child = Node | string | null | undefined | false | Child[];

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (typeof v === "function") el.addEventListener(k.replace(/^on/, ""), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el: Node, children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
  }
}

export function replace(el: Element, ...children: Child[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A section with a heading, for the views' panels. */
export function panel(title: string, id: string, ...children: Child[]): HTMLElement {
  return h(
    "section",
    { class: "panel", "aria-labelledby": `${id}-h`, id },
    h("h2", { id: `${id}-h` }, title),
    h("div", { class: "panel-body", "aria-live": "polite" }, ...children),
  );
}

/** Replaces what a panel shows, keeping its heading. */
export function fill(section: HTMLElement, ...children: Child[]): void {
  replace(section.querySelector(".panel-body") ?? section, ...children);
}

/**
 * A table that scrolls sideways on a phone rather than overflowing the page (with a shadow at the edge it can scroll
 * towards, so nothing hides unmarked); `fit`: its text columns wrap instead, so it never needs to scroll.
 */
export function table(
  caption: string,
  head: string[],
  rows: Node[],
  numeric: number[] = [],
  opts: { fit?: boolean } = {},
): HTMLElement {
  return h(
    "div",
    { class: opts.fit ? "scroll fit" : "scroll", role: "region", "aria-label": caption, tabindex: 0 },
    h(
      "table",
      {},
      h("caption", { class: "sr-only" }, caption),
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          head.map((t, i) => h("th", { scope: "col", class: numeric.includes(i) ? "num" : null }, t)),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
}

/** "2026-11-20T12:00:00Z" → "2026-11-20 12:00 UTC" */
export const when = (iso: string) => `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC`;

export function message(text: string, kind: "status" | "alert" = "status"): HTMLElement {
  return h("p", { role: kind, class: kind === "alert" ? "error" : "muted" }, text);
}
