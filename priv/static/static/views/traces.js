// Placeholder until the Traces view lands (owned by another part of the
// work on the dashboard): it says so plainly instead of showing nothing.

import { h } from '../lib/dom.js';

export default {
  id: 'traces',
  title: 'Traces',
  key: 't',
  mount(el) {
    el.replaceChildren(
      h('div', { class: 'placeholder' },
        h('h2', {}, 'Traces'),
        h('p', {}, 'This view is loading: it has not landed in this build of the dashboard yet.')));
  },
  unmount() {},
};
