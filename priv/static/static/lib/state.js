// URL state: the tab, selected node, filters... live in the location hash
// (`#tab=overview&node=a@host`), so they survive a reload and a mode switch,
// and a link can be shared. Never the token.

const listeners = new Set();

function parse() {
  const params = new URLSearchParams(window.location.hash.replace(/^#/, ''));
  const out = {};
  for (const [k, v] of params) out[k] = v;
  return out;
}

let current = parse();

function write() {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(current)) {
    if (v !== undefined && v !== null && v !== '') params.set(k, v);
  }
  const hash = `#${params.toString()}`;
  if (window.location.hash !== hash) history.replaceState(null, '', hash);
}

window.addEventListener('hashchange', () => {
  const before = current;
  current = parse();
  for (const fn of listeners) fn(current, before);
});

export const state = {
  get(key) {
    return current[key] === undefined ? null : current[key];
  },
  set(key, value) {
    const before = { ...current };
    if (value === null || value === undefined || value === '') delete current[key];
    else current[key] = String(value);
    write();
    for (const fn of listeners) fn(current, before);
  },
  all() {
    return { ...current };
  },
  onChange(fn) {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },
};
