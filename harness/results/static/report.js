(function () {
  'use strict';
  var t0 = performance.now();
  var DATA = JSON.parse(document.getElementById('report-data').textContent);
  var state = {cells: new Set(DATA.cells), query: '', failures: false};

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);  // user data: text only, never markup
    return e;
  }

  // --- tables: sort by a column, hide rows and columns ---
  function value(row, i) {
    var c = row.cells[i];
    if (!c) return null;
    var t = c.textContent.trim();
    if (t === '') return null;
    var x = parseFloat(t);
    return isNaN(x) ? t.toLowerCase() : x;
  }
  function sortBy(table, i, th) {
    var dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
    table.querySelectorAll('th[data-dir]').forEach(function (h) { delete h.dataset.dir; });
    th.dataset.dir = dir;
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = value(a, i), y = value(b, i);
      if (x === null) return y === null ? 0 : 1;
      if (y === null) return -1;
      var c = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
      return dir === 'asc' ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  function sortable(table, ths, offset) {
    ths.forEach(function (th, i) {
      th.classList.add('sort');
      th.title = 'sort by this column';
      th.addEventListener('click', function () { sortBy(table, i + offset, th); });
    });
  }
  var board = document.getElementById('leaderboard');
  if (board) {
    var head = board.tHead.rows;
    sortable(board, [head[0].cells[0]], 0);
    sortable(board, Array.prototype.slice.call(head[1].cells), 1);
  }
  document.querySelectorAll('table.sortable').forEach(function (t) {
    sortable(t, Array.prototype.slice.call(t.tHead.rows[0].cells), 0);
  });
  function hidden(kind) {
    var off = new Set();
    document.querySelectorAll('input[data-kind="' + kind + '"]').forEach(function (i) { if (!i.checked) off.add(i.value); });
    return off;
  }
  function applyHide() {
    if (!board || !DATA.table) return;
    var rows = hidden('row'), benches = hidden('bench'), vars = hidden('variant');
    Array.prototype.forEach.call(board.tBodies[0].rows, function (tr) { tr.hidden = rows.has(tr.cells[0].textContent); });
    board.querySelectorAll('td[data-bench]').forEach(function (td) {
      td.hidden = benches.has(td.dataset.bench) || vars.has(td.dataset.variant);
    });
    var B = DATA.table.benchmarks, V = DATA.table.variants, head = board.tHead.rows;
    var shown = V.filter(function (v) { return !vars.has(v); }).length;
    B.forEach(function (b, i) {
      var th = head[0].cells[i + 1];
      th.hidden = benches.has(b) || shown === 0;
      if (!th.hidden) th.colSpan = shown;
      V.forEach(function (v, k) { head[1].cells[i * V.length + k].hidden = benches.has(b) || vars.has(v); });
    });
  }
  document.querySelectorAll('.hide-controls input').forEach(function (i) { i.addEventListener('change', applyHide); });

  // --- answers: rendered a chunk at a time, filtered by cell, searched ---
  function fmt(x) { return String(Math.round(x * 1000) / 1000); }
  function isFailure(v) { return v && v[0] === null; }
  function has(s, q) { return typeof s === 'string' && s.toLowerCase().indexOf(q) >= 0; }
  function matches(b, qi, subs) {
    if (state.failures && !subs.some(function (s) {
      return Object.keys(s.verdicts).some(function (j) { return isFailure(s.verdicts[j][qi]); });
    })) return false;
    var q = state.query;
    if (!q) return true;
    var question = b.questions[qi];
    if (has(question[0], q) || has(question[1], q) || has(question[2], q)) return true;
    return subs.some(function (s) {
      return has(s.answers[qi], q) || Object.keys(s.verdicts).some(function (j) {
        var v = s.verdicts[j][qi];
        return v && has(v[1], q);
      });
    });
  }
  function answerNode(s, qi) {
    var box = el('section', 'answer');
    box.dataset.cell = s.label;
    box.appendChild(el('h4', null, s.label));
    var a = s.answers[qi];
    if (typeof a === 'string') box.appendChild(el('div', 'text', a));
    else if (a === null) box.appendChild(el('div', 'text note', 'no generated answer: this benchmark scores the given answers'));
    else box.appendChild(el('div', 'text note missing-answer',
      s.problem ? 'no answer: ' + s.problem : 'no answer stored for this question'));
    Object.keys(s.verdicts).forEach(function (j) {
      var v = s.verdicts[j][qi], line = el('div', 'verdict');
      if (!v) { line.classList.add('note'); line.textContent = j + ': not judged'; }
      else if (v[0] === null) { line.classList.add('fail'); line.textContent = j + ': judge failure (its reply did not parse)'; }
      else line.textContent = j + ': ' + fmt(v[0]);
      if (v && v[1]) {
        var d = el('details');
        d.appendChild(el('summary', null, 'judge reply'));
        d.appendChild(el('pre', null, v[1]));
        line.appendChild(d);
      }
      box.appendChild(line);
    });
    if (s.disagree.indexOf(qi) >= 0) box.appendChild(el('div', 'verdict fail disagree',
      'parse rules disagree: the judges above read the same reply into different scores'));
    return box;
  }
  function questionNode(b, qi, subs) {
    var q = b.questions[qi], art = el('article', 'q'), head = el('header');
    art.dataset.question = q[0];
    head.appendChild(el('span', 'qid', 'question ' + q[0]));
    if (q[2]) head.appendChild(el('span', 'tag', q[2]));
    if (q[3]) head.appendChild(el('span', 'tag', 'client ' + q[3]));
    art.appendChild(head);
    art.appendChild(el('div', 'prompt', q[1] || '(question text not stored)'));
    var grid = el('div', 'answers');
    subs.forEach(function (s) { grid.appendChild(answerNode(s, qi)); });
    art.appendChild(grid);
    return art;
  }
  function inView(node) {
    var r = node.getBoundingClientRect();
    return r.top < window.innerHeight + 600 && r.bottom > 0 && !node.hidden;
  }
  function more(det) {
    var b = DATA.benchmarks[det.dataset.index], list = det.querySelector('.qlist'), button = det.querySelector('.more');
    var end = Math.min(det._order.length, det._shown + DATA.chunk);
    var frag = document.createDocumentFragment();
    for (var k = det._shown; k < end; k++) frag.appendChild(questionNode(b, det._order[k], det._subs));
    list.appendChild(frag);
    det._shown = end;
    button.hidden = end >= det._order.length;
    button.textContent = 'show more (' + (det._order.length - end) + ' left)';
    requestAnimationFrame(function () { if (det.open && !button.hidden && inView(button)) more(det); });
  }
  function refresh(det) {
    var b = DATA.benchmarks[det.dataset.index];
    det._subs = b.subjects.filter(function (s) { return state.cells.has(s.label); });
    det._order = [];
    for (var qi = 0; qi < b.questions.length; qi++) if (matches(b, qi, det._subs)) det._order.push(qi);
    det._shown = 0;
    det._rendered = true;
    det.querySelector('.qlist').textContent = '';
    det.querySelector('.count').textContent = 'showing ' + det._order.length + ' of ' + b.questions.length +
      ' questions, answers of ' + det._subs.length + ' of ' + b.subjects.length + ' subjects';
    more(det);
  }
  var benches = Array.prototype.slice.call(document.querySelectorAll('details.bench'));
  var watcher = 'IntersectionObserver' in window ? new IntersectionObserver(function (entries) {
    entries.forEach(function (en) {
      var det = en.target.closest('details.bench');
      if (en.isIntersecting && det.open && !en.target.hidden) more(det);
    });
  }, {rootMargin: '600px'}) : null;
  benches.forEach(function (det) {
    det.addEventListener('toggle', function () { if (det.open && !det._rendered) refresh(det); });
    det.querySelector('.more').addEventListener('click', function () { more(det); });
    if (watcher) watcher.observe(det.querySelector('.more'));
  });
  function changed() {
    benches.forEach(function (det) { if (det.open) refresh(det); else det._rendered = false; });
    var p = new URLSearchParams();
    if (state.cells.size !== DATA.cells.length) p.set('cell', Array.from(state.cells).join(','));
    if (state.query) p.set('q', state.query);
    if (state.failures) p.set('failures', '1');
    var open = benches.filter(function (d) { return d.open; }).map(function (d) { return d.dataset.bench; });
    if (open.length) p.set('bench', open.join(','));
    try {
      history.replaceState(null, '', p.toString() ? '#' + p.toString() : location.pathname);
    } catch (err) { /* some browsers refuse it on file: URLs; the view still changes */ }
  }
  var picks = Array.prototype.slice.call(document.querySelectorAll('input[data-kind="cell"]'));
  function readPicks() {
    state.cells = new Set(picks.filter(function (i) { return i.checked; }).map(function (i) { return i.value; }));
  }
  picks.forEach(function (i) { i.addEventListener('change', function () { readPicks(); changed(); }); });
  function pickAll(on) { picks.forEach(function (i) { i.checked = on; }); readPicks(); changed(); }
  var all = document.getElementById('cells-all'), none = document.getElementById('cells-none');
  if (all) all.addEventListener('click', function () { pickAll(true); });
  if (none) none.addEventListener('click', function () { pickAll(false); });
  var search = document.getElementById('search'), timer = null;
  if (search) search.addEventListener('input', function () {
    clearTimeout(timer);
    timer = setTimeout(function () { state.query = search.value.trim().toLowerCase(); changed(); }, 250);
  });
  var fails = document.getElementById('failures-only');
  if (fails) fails.addEventListener('change', function () { state.failures = fails.checked; changed(); });

  // #cell=NAME[,NAME]&bench=NAME&q=TEXT&failures=1: a filtered view that can be linked to (and tested)
  function applyHash(event) {
    var p = new URLSearchParams(location.hash.slice(1));
    if (!['cell', 'bench', 'q', 'failures'].some(function (k) { return p.has(k); })) return false;
    if (p.has('cell')) {
      var wanted = new Set(p.get('cell').split(','));
      picks.forEach(function (i) { i.checked = wanted.has(i.value); });
      readPicks();
    }
    state.query = (p.get('q') || '').toLowerCase();
    if (search) search.value = p.get('q') || '';
    state.failures = p.get('failures') === '1';
    if (fails) fails.checked = state.failures;
    var names = p.has('bench') ? new Set(p.get('bench').split(',')) : null;
    benches.forEach(function (det) {
      var open = names === null || names.has(det.dataset.bench);
      det.open = open;
      if (open) refresh(det); else det._rendered = false;
    });
    var target = document.getElementById('answers');
    if (event && target && target.scrollIntoView) target.scrollIntoView();  // a link in the page; a shared link opens at the top
    return true;
  }
  window.addEventListener('hashchange', applyHash);
  applyHash(null);
  document.body.dataset.scriptMs = String(Math.round(performance.now() - t0));  // parsing the data, setting up
  document.body.dataset.readyMs = String(Math.round(performance.now()));  // since the navigation started
  document.body.dataset.ready = '1';
})();
